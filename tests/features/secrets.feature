# Needs the CLI's environment to provide two secrets; run the checker with:
#   --env FLOWKEEPER_SECRET_API_TOKEN=s3cr3t
#   --env 'FLOWKEEPER_SECRET_BASIC={"username":"serverless-workflow","password":"conformance-test"}'
# (the CLI reads secret NAME from the environment variable FLOWKEEPER_SECRET_<NAME>).
Feature: Secrets
  As the Flowkeeper team
  We want declared secrets to reach expressions and authentication policies
  So that credentials never have to be written into definitions

  # Pins: a secret declared in `use.secrets` is readable as `$secrets.<NAME>` in
  # `input.from`.
  Scenario: A Declared Secret Is Available In Input From
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: secret-in-input-from, version: '1.0.0'}
    use:
      secrets:
        - API_TOKEN
    do:
      - checkToken:
          input:
            from: '${ {token: $secrets.API_TOKEN} }'
          set:
            matches: ${ .token == "s3cr3t" }
            length: ${ .token | length }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    matches: true
    length: 6
    """

  # Pins: a bearer token taken from a secret is sent as an Authorization header.
  Scenario: Bearer Authentication With A Secret Token
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: secret-bearer-token, version: '1.0.0'}
    use:
      secrets:
        - API_TOKEN
    do:
      - callApi:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/rec/secret-bearer'
              authentication:
                bearer:
                  token: ${ $secrets.API_TOKEN }
    """
    When the workflow is executed
    Then the workflow should complete
    And every request at '/rec/secret-bearer' should carry a header 'Authorization'

  # Pins: a secret-based basic policy (`basic: {use: BASIC}`) takes username and
  # password from the secret's JSON value.
  Scenario: Basic Authentication From A Secret
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: secret-basic-auth, version: '1.0.0'}
    use:
      secrets:
        - BASIC
      authentications:
        fromSecret:
          basic:
            use: BASIC
    do:
      - login:
          call: http
          with:
            method: get
            endpoint:
              uri: https://httpbin.org/basic-auth/serverless-workflow/conformance-test
              authentication:
                use: fromSecret
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    authenticated: true
    user: serverless-workflow
    """

  # Pins: accessing a declared secret that does not exist raises the authorization
  # error (type .../errors/authorization, status 403), per the DSL's Secret section.
  Scenario: A Missing Secret Raises The Authorization Error
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: secret-missing, version: '1.0.0'}
    use:
      secrets:
        - NOT_PROVIDED_ANYWHERE
    do:
      - readSecret:
          input:
            from: '${ {value: $secrets.NOT_PROVIDED_ANYWHERE} }'
          set:
            value: ${ .value }
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/authorization
    status: 403
    """

Feature: HTTP Calls
  As the Flowkeeper team
  We want `call: http` to send the request the definition describes and shape its output
  So that services can be integrated without surprises

  # The stand-in's /rec/<name> records each request and answers
  # {ok: true, count: <requests so far on that path>, echo: <request body>}.

  # Pins: a POST sends its JSON body (with runtime expressions evaluated), and the
  # default output is the deserialized response content.
  Scenario: POST A JSON Body
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-post-json-body, version: '1.0.0'}
    do:
      - createOrder:
          call: http
          with:
            method: post
            endpoint:
              uri: '{{STANDIN}}/rec/http-post-body'
            body:
              customer: ${ .customer }
              items: [apple, pear]
              express: true
    """
    And given the workflow input is:
    """yaml
    customer: ada
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    ok: true
    count: 1
    echo:
      customer: ada
      items: [apple, pear]
      express: true
    """
    And the stand-in should have received at '/rec/http-post-body' the body:
    """yaml
    customer: ada
    items: [apple, pear]
    express: true
    """

  # Pins: `query` parameters (with expressions) are sent on the request URL.
  Scenario: Query Parameters
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-query-parameters, version: '1.0.0'}
    do:
      - findSold:
          call: http
          with:
            method: get
            endpoint:
              uri: https://petstore.swagger.io/v2/pet/findByStatus
            query:
              status: ${ .wanted }
          output:
            as: map(.name)
    """
    And given the workflow input is:
    """yaml
    wanted: sold
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    [goldie]
    """

  # Pins: configured `headers` are sent with the request.
  Scenario: Request Headers
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-request-headers, version: '1.0.0'}
    do:
      - tagged:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/rec/http-headers'
            headers:
              X-Tenant: ${ .tenant }
              X-Trace: trace-1
    """
    And given the workflow input is:
    """yaml
    tenant: acme
    """
    When the workflow is executed
    Then the workflow should complete
    And every request at '/rec/http-headers' should carry a header 'X-Tenant'
    And every request at '/rec/http-headers' should carry a header 'X-Trace'

  # Pins: `output: response` yields {request: {method, uri, headers}, headers,
  # statusCode, content}.
  Scenario: Response Output
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-output-response, version: '1.0.0'}
    do:
      - fetch:
          call: http
          with:
            method: post
            endpoint:
              uri: '{{STANDIN}}/rec/http-response'
            body:
              ping: pong
            output: response
    """
    When the workflow is executed
    Then the workflow should complete
    And the workflow output should have properties 'request', 'request.method', 'request.uri', 'request.headers', 'headers', 'statusCode', 'content'
    And the workflow output should have a 'statusCode' property with value:
    """yaml
    200
    """
    And the workflow output should have a 'content' property with value:
    """yaml
    ok: true
    count: 1
    echo:
      ping: pong
    """

  # Pins: `output: raw` yields the base64-encoded response body.
  Scenario: Raw Output
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-output-raw, version: '1.0.0'}
    do:
      - fetch:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/status/200'
            output: raw
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    eyJzdGF0dXMiOiAyMDB9
    """

  # Pins: an uncaught 503 answer faults the workflow with the communication error's
  # status 503 and the calling task's instance.
  Scenario: An Uncaught 503 Faults The Workflow
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-uncaught-503, version: '1.0.0'}
    do:
      - callService:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/status/503'
      - after:
          set:
            reached: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    status: 503
    instance: /do/0/callService
    """
    And after should not run

  # Pins: a URI template variable with no value is replaced by an empty string.
  Scenario: A Missing URI Template Variable Becomes Empty
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-template-missing-var, version: '1.0.0'}
    do:
      - fetch:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/rec/http-template-{suffix}'
    """
    When the workflow is executed
    Then the workflow should complete
    And the stand-in should have received 1 request at '/rec/http-template-'

  # Pins: a URI template variable that is not a string/number/boolean/null raises the
  # expression error with status 400 (DSL URI Template section).
  Scenario: A Non-scalar URI Template Variable Raises An Expression Error
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-template-object-var, version: '1.0.0'}
    do:
      - fetch:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/rec/http-template-object/{pet}'
    """
    And given the workflow input is:
    """yaml
    pet:
      id: 1
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/expression
    status: 400
    """

  # Pins: basic authentication through a reusable policy in `use.authentications`.
  Scenario: Basic Authentication Through A Reusable Policy
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-basic-auth-reusable, version: '1.0.0'}
    use:
      authentications:
        conformance:
          basic:
            username: serverless-workflow
            password: conformance-test
    do:
      - login:
          call: http
          with:
            method: get
            endpoint:
              uri: https://httpbin.org/basic-auth/serverless-workflow/conformance-test
              authentication:
                use: conformance
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    authenticated: true
    user: serverless-workflow
    """

  # Pins: Flowkeeper sends an Idempotency-Key header on every HTTP call (DESIGN).
  Scenario: Every Call Carries An Idempotency Key
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: http-idempotency-key, version: '1.0.0'}
    do:
      - first:
          call: http
          with:
            method: post
            endpoint:
              uri: '{{STANDIN}}/rec/http-idempotency'
            body:
              n: 1
      - second:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/rec/http-idempotency'
    """
    When the workflow is executed
    Then the workflow should complete
    And the stand-in should have received 2 requests at '/rec/http-idempotency'
    And every request at '/rec/http-idempotency' should carry a header 'Idempotency-Key'

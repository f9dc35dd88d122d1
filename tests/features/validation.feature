Feature: Definition Validation
  As the Flowkeeper team
  We want invalid definitions rejected before anything runs (CLI exit 2)
  So that authors learn about mistakes at deployment time, not mid-run

  # Pins: a `then` naming a task that does not exist makes the definition invalid (DESIGN).
  Scenario: Then To A Missing Task Is Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-then-missing, version: '1.0.0'}
    do:
      - start:
          set:
            a: 1
          then: nowhere
      - finish:
          set:
            b: 2
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: a `then` may only target a task in the same task list; a task at another
  # depth makes the definition invalid (DSL flow directives, DESIGN).
  Scenario: Then To A Task At Another Depth Is Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-then-other-depth, version: '1.0.0'}
    do:
      - start:
          set:
            a: 1
          then: deep
      - group:
          do:
            - deep:
                set:
                  b: 2
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: two tasks with the same name in one task list make the definition invalid.
  Scenario: Duplicate Task Names In One List Are Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-duplicate-names, version: '1.0.0'}
    do:
      - step:
          set:
            a: 1
      - step:
          set:
            b: 2
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: the same task name in different task lists is fine.
  Scenario: The Same Name In Different Lists Is Valid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: valid-same-name-other-list, version: '1.0.0'}
    do:
      - step:
          do:
            - step:
                set:
                  nested: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    nested: true
    """

  # Pins: `run: container` is not supported by Flowkeeper and is rejected at validation.
  Scenario: Run Container Is Rejected
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-run-container, version: '1.0.0'}
    do:
      - build:
          run:
            container:
              image: alpine:3
              command: echo hello
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: `raise.error` naming an error missing from `use.errors` is invalid.
  Scenario: Unknown Reusable Error Reference Is Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-unknown-error-ref, version: '1.0.0'}
    use:
      errors:
        known:
          type: https://example.com/errors/known
          status: 400
    do:
      - fail:
          raise:
            error: unknown
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: `catch.retry` naming a policy missing from `use.retries` is invalid.
  Scenario: Unknown Retry Policy Reference Is Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-unknown-retry-ref, version: '1.0.0'}
    do:
      - guarded:
          try:
            - work:
                set:
                  a: 1
          catch:
            retry: doesNotExist
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: a switch may have only one default case (DSL Switch Case).
  Scenario: Two Default Switch Cases Are Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-two-defaults, version: '1.0.0'}
    do:
      - route:
          switch:
            - first:
                then: a
            - second:
                then: b
      - a:
          set:
            a: 1
      - b:
          set:
            b: 1
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

  # Pins: a task of an unknown kind is invalid.
  Scenario: An Unknown Task Kind Is Invalid
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: invalid-unknown-task-kind, version: '1.0.0'}
    do:
      - work:
          teleport:
            to: mars
    """
    When the workflow is executed
    Then the workflow should be rejected as invalid

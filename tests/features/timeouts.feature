Feature: Timeouts
  As the Flowkeeper team
  We want task and workflow timeouts to interrupt work and raise the standard timeout error
  So that slow calls and long waits cannot hold an instance forever

  # Pins: a task `timeout.after` shorter than the call interrupts it and raises the
  # timeout error (type .../errors/timeout, status 408) from that task; the run does
  # not wait for the slow answer.
  Scenario: A Task Timeout Interrupts A Slow HTTP Call
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-timeout-slow-call, version: '1.0.0'}
    do:
      - slowCall:
          call: http
          with:
            method: get
            endpoint:
              uri: '{{STANDIN}}/slow?ms=3000'
          timeout:
            after: PT0.2S
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
    status: 408
    instance: /do/0/slowCall
    """
    And the run should take less than 2.8 seconds

  # Pins: the timeout error can be caught by a try filtering on the timeout type.
  Scenario: A Task Timeout Is Caught By Try
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-timeout-caught, version: '1.0.0'}
    do:
      - guarded:
          try:
            - slowCall:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/slow?ms=3000'
                timeout:
                  after: PT0.2S
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
                status: 408
            do:
              - fallback:
                  set:
                    timedOut: true
                    status: ${ $error.status }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    timedOut: true
    status: 408
    """
    And the run should take less than 2.8 seconds

  # Pins: a task timeout bounds a `listen` task: with no event, the timeout error is
  # raised (rather than the instance staying suspended).
  Scenario: A Task Timeout Interrupts A Listen That Receives Nothing
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-timeout-listen, version: '1.0.0'}
    do:
      - waitForApproval:
          listen:
            to:
              one:
                with:
                  type: com.example.approval.granted.v1
          timeout:
            after: PT0.3S
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
    status: 408
    """
    And the run should take less than 5 seconds

  # Pins: a workflow-level `timeout` faults the whole run with the timeout error.
  Scenario: A Workflow Timeout Faults The Run
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: workflow-timeout, version: '1.0.0'}
    timeout:
      after:
        milliseconds: 300
    do:
      - longPause:
          wait:
            minutes: 5
      - afterPause:
          set:
            done: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
    status: 408
    """
    And afterPause should not run
    And the run should take less than 5 seconds

  # Pins: a task `timeout` may name a reusable timeout from `use.timeouts`.
  Scenario: A Reusable Timeout From use.timeouts
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: reusable-timeout, version: '1.0.0'}
    use:
      timeouts:
        short:
          after: PT0.2S
    do:
      - guarded:
          try:
            - slowCall:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/slow?ms=3000'
                timeout: short
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
            do:
              - fallback:
                  set:
                    timedOut: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    timedOut: true
    """
    And the run should take less than 2.8 seconds

  # Pins: a timeout on a composite `do` task bounds all of its subtasks together.
  Scenario: A Timeout On A Do Task Bounds Its Subtasks Together
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: composite-timeout, version: '1.0.0'}
    do:
      - guarded:
          try:
            - steps:
                timeout:
                  after:
                    milliseconds: 500
                do:
                  - first:
                      wait:
                        milliseconds: 300
                  - second:
                      wait:
                        milliseconds: 300
                  - third:
                      set:
                        finished: true
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
            do:
              - fallback:
                  set:
                    timedOut: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    timedOut: true
    """
    And third should not run

Feature: Wait Task
  As the Flowkeeper team
  We want wait tasks to pause for the configured duration through durable timers
  So that every duration form of the DSL is honoured

  # Pins: an ISO 8601 duration string (`PT1S`) pauses the workflow for at least that long.
  Scenario: Wait With An ISO 8601 Duration
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: wait-iso8601, version: '1.0.0'}
    do:
      - pause:
          wait: PT1S
    """
    When the workflow is executed
    Then the workflow should complete
    And the run should take at least 1 seconds

  # Pins: the object duration form (`seconds: 1`) pauses the workflow for at least that long.
  Scenario: Wait With An Object Duration In Seconds
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: wait-object-seconds, version: '1.0.0'}
    do:
      - pause:
          wait:
            seconds: 1
    """
    When the workflow is executed
    Then the workflow should complete
    And the run should take at least 1 seconds

  # Pins: the object duration form in milliseconds; a wait passes its input through unchanged.
  Scenario: Wait With An Object Duration In Milliseconds Passes Its Input Through
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: wait-object-milliseconds, version: '1.0.0'}
    do:
      - pause:
          wait:
            milliseconds: 500
    """
    And given the workflow input is:
    """yaml
    order: 17
    items: [a, b]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    order: 17
    items: [a, b]
    """
    And the run should take at least 0.5 seconds

  # Pins: a wait that outlasts the CLI's --wait leaves the instance suspended on its
  # durable timer (exit 3, status "suspended"), and the next task has not run.
  Scenario: A Wait Longer Than The CLI Wait Is Reported As Suspended
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: wait-outlasts-cli, version: '1.0.0'}
    do:
      - longPause:
          wait:
            minutes: 10
      - afterPause:
          set:
            done: true
    """
    When the workflow is executed with a wait of 1 seconds
    Then the workflow should be suspended
    And afterPause should not run

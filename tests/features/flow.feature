Feature: Flow Directives And Composition
  As the Flowkeeper team
  We want then/continue/exit/end, switch and nested do to direct the flow as the DSL says
  So that authors can build loops and early exits

  # Pins: `then: <name>` jumps forward to a named task; the tasks in between do not run.
  Scenario: Then Jumps To A Named Task
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: then-named-task, version: '1.0.0'}
    do:
      - start:
          set:
            path: [start]
          then: finish
      - skipped:
          set:
            path: ${ .path + ["skipped"] }
      - finish:
          set:
            path: ${ .path + ["finish"] }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    path: [start, finish]
    """
    And skipped should not run
    And finish should run after start

  # Pins: a backwards `then` builds a loop; a counter and a switch end it.
  Scenario: A Backwards Loop With A Counter And A Switch
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: backwards-loop, version: '1.0.0'}
    do:
      - init:
          set:
            count: 0
      - increment:
          set:
            count: ${ .count + 1 }
      - check:
          switch:
            - again:
                when: .count < 3
                then: increment
            - done:
                then: continue
      - report:
          set:
            final: ${ .count }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    final: 3
    """
    And report should run last

  # Pins: `then: exit` leaves the current (nested) scope only; the outer list continues
  # with the task after the composite task.
  Scenario: Exit Leaves A Nested Do And The Outer Flow Continues
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: exit-nested-do, version: '1.0.0'}
    do:
      - inner:
          do:
            - first:
                set:
                  steps: [first]
                then: exit
            - second:
                set:
                  steps: ${ .steps + ["second"] }
      - outer:
          set:
            steps: ${ .steps + ["outer"] }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    steps: [first, outer]
    """
    And second should not run

  # Pins: `then: end` from a task nested in a composite ends the whole workflow; the
  # ending task's output is the workflow output.
  Scenario: End From A Nested Task Ends The Workflow
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: end-from-nested, version: '1.0.0'}
    do:
      - inner:
          do:
            - first:
                set:
                  steps: [first]
                then: end
            - second:
                set:
                  steps: ${ .steps + ["second"] }
      - outer:
          set:
            steps: ${ .steps + ["outer"] }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    steps: [first]
    """
    And second should not run
    And outer should not run

  # Pins: a switch's default case (no `when`) is taken when no other case matches.
  Scenario: Switch Falls Back To Its Default Case
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: switch-default-case, version: '1.0.0'}
    do:
      - route:
          switch:
            - express:
                when: ${ .shipping == "express" }
                then: shipExpress
            - fallback:
                then: shipStandard
      - shipExpress:
          set:
            carrier: plane
          then: end
      - shipStandard:
          set:
            carrier: truck
    """
    And given the workflow input is:
    """yaml
    shipping: economy
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    carrier: truck
    """
    And shipExpress should not run

  # Pins: a switch with no matching case (and no default) follows the switch task's own `then`.
  Scenario: Switch Without A Match Follows Its Own Then
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: switch-no-match-then, version: '1.0.0'}
    do:
      - route:
          switch:
            - red:
                when: .color == "red"
                then: paintRed
          then: paintGrey
      - paintRed:
          set:
            painted: red
          then: end
      - paintGrey:
          set:
            painted: grey
    """
    And given the workflow input is:
    """yaml
    color: blue
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    painted: grey
    """
    And paintRed should not run

  # Pins: nested `do` tasks run in order and the composite's output is its last subtask's.
  Scenario: Nested Do Tasks Run In Order
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: nested-do, version: '1.0.0'}
    do:
      - level1:
          do:
            - level2:
                do:
                  - a:
                      set:
                        trail: [a]
                  - b:
                      set:
                        trail: ${ .trail + ["b"] }
            - c:
                set:
                  trail: ${ .trail + ["c"] }
      - d:
          set:
            trail: ${ .trail + ["d"] }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    trail: [a, b, c, d]
    """
    And level1 should run first
    And d should run last
    And c should run after b

Feature: Fork Task
  As the Flowkeeper team
  We want fork branches to run concurrently and join (or compete) as the DSL says
  So that parallel work produces predictable outputs

  # Pins: without `compete`, the fork's output is the array of branch outputs in
  # declaration order, even when the first branch finishes last.
  Scenario: Fork Joins Branch Outputs In Declaration Order
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: fork-join-order, version: '1.0.0'}
    do:
      - parallel:
          fork:
            branches:
              - slow:
                  do:
                    - pause:
                        wait:
                          milliseconds: 300
                    - mark:
                        set:
                          branch: slow
              - fast:
                  set:
                    branch: fast
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - branch: slow
    - branch: fast
    """

  # Pins: with `compete: true` the first branch to complete wins and sets the output;
  # the slower branch is abandoned (the run does not wait for it).
  Scenario: Competing Branches, The Fast One Wins
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: fork-compete-fast-wins, version: '1.0.0'}
    do:
      - race:
          fork:
            compete: true
            branches:
              - tortoise:
                  do:
                    - crawl:
                        wait:
                          seconds: 5
                    - arrive:
                        set:
                          winner: tortoise
              - hare:
                  set:
                    winner: hare
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    winner: hare
    """
    And arrive should not run
    And the run should take less than 4 seconds

  # Pins: branches run concurrently: three 800 ms waits take about 0.8 s, not 2.4 s.
  Scenario: Branches Run Concurrently
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: fork-concurrent-waits, version: '1.0.0'}
    do:
      - parallel:
          fork:
            branches:
              - a:
                  wait:
                    milliseconds: 800
              - b:
                  wait:
                    milliseconds: 800
              - c:
                  wait:
                    milliseconds: 800
      - done:
          set:
            done: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    done: true
    """
    And the run should take at least 0.8 seconds
    And the run should take less than 2.2 seconds

  # Pins: an uncaught error in one branch faults the fork and the workflow with that error.
  Scenario: A Faulting Branch Faults The Workflow
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: fork-branch-faults, version: '1.0.0'}
    do:
      - parallel:
          fork:
            branches:
              - fine:
                  set:
                    ok: true
              - broken:
                  raise:
                    error:
                      type: https://example.com/errors/branch-failed
                      status: 500
                      title: Branch Failed
      - after:
          set:
            reached: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/branch-failed
    status: 500
    title: Branch Failed
    """
    And after should not run

  # Pins: a branch error can be caught by a try around the fork.
  Scenario: A Branch Error Is Caught Around The Fork
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: fork-branch-error-caught, version: '1.0.0'}
    do:
      - guarded:
          try:
            - parallel:
                fork:
                  branches:
                    - fine:
                        set:
                          ok: true
                    - broken:
                        raise:
                          error:
                            type: https://example.com/errors/branch-failed
                            status: 500
          catch:
            errors:
              with:
                type: https://example.com/errors/branch-failed
            do:
              - recover:
                  set:
                    recovered: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    recovered: true
    """

Feature: Errors, Try And Catch
  As the Flowkeeper team
  We want errors to be raised, filtered, caught and reported as the DSL describes
  So that authors can rely on try/catch and on the error objects of faulted runs

  # Pins: `catch.errors.with.type` in the spec spelling
  # (https://serverlessworkflow.io/spec/1.0.0/errors/communication) plus `status`
  # catches an HTTP 404; the error is bound to `$error` by default.
  Scenario: Catch A Communication Error By Type And Status (Spec Spelling)
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-communication-spec-type, version: '1.0.0'}
    do:
      - guarded:
          try:
            - lookup:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/status/404'
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/communication
                status: 404
            do:
              - recover:
                  set:
                    caught: ${ $error.status }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    caught: 404
    """

  # Pins: the same filter written with the DSL-namespace spelling
  # (https://serverlessworkflow.io/dsl/errors/types/communication) matches too.
  Scenario: Catch A Communication Error By Type And Status (DSL Spelling)
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-communication-dsl-type, version: '1.0.0'}
    do:
      - guarded:
          try:
            - lookup:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/status/404'
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/dsl/errors/types/communication
                status: 404
            do:
              - recover:
                  set:
                    caught: ${ $error.status }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    caught: 404
    """

  # Pins: an error whose type the filter does not match is re-raised unchanged: the
  # workflow faults with the original error and the raising task's instance pointer.
  Scenario: An Error Not Matching The Filter Is Re-raised
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-type-mismatch, version: '1.0.0'}
    do:
      - guarded:
          try:
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/out-of-stock
                    status: 409
                    title: Out Of Stock
          catch:
            errors:
              with:
                type: https://example.com/errors/payment-declined
            do:
              - recover:
                  set:
                    recovered: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/out-of-stock
    status: 409
    title: Out Of Stock
    instance: /do/0/guarded/try/0/reject
    """
    And recover should not run

  # Pins: `catch.as` renames the error variable, and that variable is bound while
  # `catch.when` is evaluated (DESIGN); a true `when` catches the error.
  Scenario: Catch With A Custom Variable Name And A Matching When
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-as-when-true, version: '1.0.0'}
    do:
      - guarded:
          try:
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/conflict
                    status: 409
          catch:
            as: failure
            when: ${ $failure.status == 409 }
            do:
              - recover:
                  set:
                    code: ${ $failure.status }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    code: 409
    """

  # Pins: `catch.exceptWhen` sees `$error` (DESIGN) and, when true, lets the error through.
  Scenario: Catch ExceptWhen True Does Not Catch
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-except-when-true, version: '1.0.0'}
    do:
      - guarded:
          try:
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/conflict
                    status: 409
          catch:
            exceptWhen: ${ $error.status == 409 }
            do:
              - recover:
                  set:
                    recovered: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/conflict
    status: 409
    """
    And recover should not run

  # Pins: a catch without `do` swallows the error, and the try task's output is its
  # (transformed) input.
  Scenario: Catch Without Do Outputs The Try Task's Input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-without-do, version: '1.0.0'}
    do:
      - guarded:
          input:
            from: '${ {kept: .a} }'
          try:
            - change:
                set:
                  changed: true
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/ignored
                    status: 400
          catch:
            errors:
              with:
                type: https://example.com/errors/ignored
    """
    And given the workflow input is:
    """yaml
    a: 1
    b: 2
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    kept: 1
    """

  # Pins: the catch's `do` gets the try task's input (not the failed task's data) plus
  # the error variable, and the workflow then continues after the try task.
  Scenario: Catch Do Sees The Try Input And The Error Then The Flow Continues
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: catch-do-input-and-error, version: '1.0.0'}
    do:
      - guarded:
          try:
            - change:
                set:
                  orderId: changed
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/declined
                    status: 402
                    title: Payment Declined
          catch:
            do:
              - recover:
                  set:
                    orderId: ${ .orderId }
                    reason: ${ $error.title }
      - finish:
          set:
            summary: ${ "\(.orderId) -> \(.reason)" }
    """
    And given the workflow input is:
    """yaml
    orderId: o-7
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    summary: o-7 -> Payment Declined
    """
    And finish should run after recover

  # Pins: nested try tasks: the inner catch does not match, so the error reaches the
  # outer catch.
  Scenario: An Outer Try Catches What The Inner Try Does Not
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: nested-try, version: '1.0.0'}
    do:
      - outer:
          try:
            - inner:
                try:
                  - reject:
                      raise:
                        error:
                          type: https://example.com/errors/internal
                          status: 500
                catch:
                  errors:
                    with:
                      status: 404
                  do:
                    - innerRecover:
                        set:
                          by: inner
          catch:
            as: e
            do:
              - outerRecover:
                  set:
                    by: outer
                    status: ${ $e.status }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    by: outer
    status: 500
    """
    And innerRecover should not run

  # Pins: an error raised inside a catch's `do` propagates, with an instance pointer
  # into the catch block.
  Scenario: An Error Raised In A Catch Block Faults The Workflow
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: raise-in-catch-do, version: '1.0.0'}
    do:
      - guarded:
          try:
            - reject:
                raise:
                  error:
                    type: https://example.com/errors/first
                    status: 400
          catch:
            do:
              - escalate:
                  raise:
                    error:
                      type: https://example.com/errors/escalated
                      status: 500
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/escalated
    status: 500
    instance: /do/0/guarded/catch/do/0/escalate
    """

  # Pins: an uncaught error faults the workflow with an `instance` JSON pointer to the
  # raising task, nested tasks included; later tasks do not run.
  Scenario: An Uncaught Error Reports The Instance Pointer Of A Nested Task
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: uncaught-nested-instance, version: '1.0.0'}
    do:
      - prepare:
          set:
            ready: true
      - validate:
          do:
            - check:
                raise:
                  error:
                    type: https://example.com/errors/invalid-order
                    status: 422
                    title: Invalid Order
      - ship:
          set:
            shipped: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/invalid-order
    status: 422
    title: Invalid Order
    instance: /do/1/validate/do/0/check
    """
    And ship should not run

  # Pins: `raise.error` may name an error from `use.errors`; the fault carries that
  # error's fields and the raising task's instance.
  Scenario: Raise A Reusable Error From use.errors
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: raise-use-errors, version: '1.0.0'}
    use:
      errors:
        notImplemented:
          type: https://example.com/errors/not-implemented
          status: 501
          title: Not Implemented
          detail: This step is a work in progress
    do:
      - start:
          set:
            started: true
      - todo:
          raise:
            error: notImplemented
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://example.com/errors/not-implemented
    status: 501
    title: Not Implemented
    detail: This step is a work in progress
    instance: /do/1/todo
    """

  # Pins: `run: shell` is disabled by default, so running it faults with a
  # configuration error instead of executing a process.
  Scenario: Run Shell Is Disabled By Default
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: run-shell-disabled, version: '1.0.0'}
    do:
      - greet:
          run:
            shell:
              command: echo hello
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/configuration
    """

Feature: Data Flow
  As the Flowkeeper team
  We want input, output, export and schemas to transform and validate data at the points the DSL defines
  So that every task sees exactly the data the DSL says it should

  # Pins: the workflow's `input.from` (bare jq, an only-expression field) transforms the
  # raw input before the first task.
  Scenario: Workflow Input Transformation
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: workflow-input-from, version: '1.0.0'}
    input:
      from: .order
    do:
      - describe:
          set:
            pet: ${ .pet }
            quantity: ${ .quantity }
    """
    And given the workflow input is:
    """yaml
    order:
      pet: rex
      quantity: 2
    noise: ignored
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    pet: rex
    quantity: 2
    """

  # Pins: a task's `input.from` in object form; `$input` is the transformed input.
  Scenario: Task Input Transformation In Object Form
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-input-from-object, version: '1.0.0'}
    do:
      - greet:
          input:
            from:
              who: ${ .user.name }
          set:
            greeting: ${ "hello \(.who)" }
            seen: ${ $input }
    """
    And given the workflow input is:
    """yaml
    user:
      name: ada
      id: 7
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    greeting: hello ada
    seen:
      who: ada
    """

  # Pins: a task's `output.as` evaluates on the raw task output, with `$input` bound to
  # the task's transformed input.
  Scenario: Task Output Transformation Sees Raw Output And $input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-output-as-input-arg, version: '1.0.0'}
    do:
      - compute:
          input:
            from: .numbers
          set:
            sum: ${ .[0] + .[1] }
          output:
            as: '${ {numbers: $input, sum: .sum} }'
    """
    And given the workflow input is:
    """yaml
    numbers: [4, 5]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    numbers: [4, 5]
    sum: 9
    """

  # Pins: `export.as` writes `$context`, which later tasks read; export does not change
  # the data passed to the next task.
  Scenario: Export To The Context And Read It Later
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: export-context, version: '1.0.0'}
    do:
      - login:
          set:
            user: ada
            token: t-1
          export:
            as: '${ $context + {user: .user} }'
      - replace:
          set:
            step: two
      - greet:
          set:
            step: ${ .step }
            greeting: ${ "hello \($context.user)" }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    step: two
    greeting: hello ada
    """

  # Pins: `$context` starts as `{}` (DESIGN).
  Scenario: The Context Starts Empty
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: context-starts-empty, version: '1.0.0'}
    do:
      - peek:
          set:
            context: ${ $context }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    context: {}
    """

  # Pins: successive exports accumulate when each merges into `$context`, exports from
  # inside a nested `do` are visible after it, and the workflow `output.as` sees `$context`.
  Scenario: Exports Accumulate Across Scopes
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: export-accumulates, version: '1.0.0'}
    do:
      - first:
          set:
            a: 1
          export:
            as: '${ $context + {a: .a} }'
      - nested:
          do:
            - second:
                set:
                  b: 2
                export:
                  as: '${ $context + {b: .b} }'
      - last:
          set:
            c: 3
    output:
      as: '${ $context + {c: .c} }'
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    a: 1
    b: 2
    c: 3
    """

  # Pins: `$workflow.input` is the raw workflow input, before the workflow's `input.from`.
  Scenario: $workflow.input Is The Raw Workflow Input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: workflow-input-arg-raw, version: '1.0.0'}
    input:
      from: .inner
    do:
      - compare:
          set:
            transformed: ${ . }
            raw: ${ $workflow.input }
    """
    And given the workflow input is:
    """yaml
    inner:
      x: 1
    outer: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    transformed:
      x: 1
    raw:
      inner:
        x: 1
      outer: true
    """

  # Pins: a task whose `if` is false is skipped and its raw input becomes its output.
  Scenario: A Task With A False If Is Skipped And Passes Its Input Through
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: if-false-skips, version: '1.0.0'}
    do:
      - discount:
          if: .vip
          set:
            price: 0
      - tag:
          set:
            price: ${ .price }
            tagged: true
    """
    And given the workflow input is:
    """yaml
    vip: false
    price: 10
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    price: 10
    tagged: true
    """

  # Pins: `if` is evaluated on the raw task input, before the task's `input.from`.
  Scenario: If Is Evaluated Before Input Transformation
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: if-before-input-from, version: '1.0.0'}
    do:
      - unwrap:
          if: .enabled
          input:
            from: .payload
          set:
            value: ${ .value }
    """
    And given the workflow input is:
    """yaml
    enabled: true
    payload:
      value: 5
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    value: 5
    """

  # Pins: a workflow `input.schema` rejects non-conforming input (exit 2, or a
  # validation fault).
  Scenario: Workflow Input Schema Rejects Invalid Input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: input-schema-rejects, version: '1.0.0'}
    input:
      schema:
        format: json
        document:
          type: object
          required: [orderId]
          properties:
            orderId:
              type: string
    do:
      - accept:
          set:
            accepted: true
    """
    And given the workflow input is:
    """yaml
    orderId: 42
    """
    When the workflow is executed
    Then the workflow input should be rejected

  # Pins: the workflow `input.schema` validates the raw input, before `input.from`.
  Scenario: Workflow Input Schema Validates The Raw Input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: input-schema-raw, version: '1.0.0'}
    input:
      schema:
        format: json
        document:
          type: object
          required: [order]
      from: .order
    do:
      - accept:
          set:
            id: ${ .id }
    """
    And given the workflow input is:
    """yaml
    order:
      id: o-1
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    id: o-1
    """

  # Pins: a workflow `output.schema` violation faults with the validation error
  # (status 400).
  Scenario: Workflow Output Schema Violation Faults
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: output-schema-violation, version: '1.0.0'}
    do:
      - produce:
          set:
            total: ten
    output:
      schema:
        format: json
        document:
          type: object
          properties:
            total:
              type: integer
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/validation
    status: 400
    """

  # Pins: a task `output.schema` is checked against the transformed output (`output.as`
  # turned the integer into a string); a violation faults with the validation error.
  Scenario: Task Output Schema Violation Faults At The Task
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-output-schema-violation, version: '1.0.0'}
    do:
      - produce:
          set:
            total: 10
          output:
            as: '${ {total: (.total | tostring)} }'
            schema:
              format: json
              document:
                type: object
                properties:
                  total:
                    type: integer
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/validation
    status: 400
    """

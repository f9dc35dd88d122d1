Feature: Runtime Expressions
  As the Flowkeeper team
  We want jq runtime expressions, their arguments and their failures to behave as the DSL and DESIGN.md say
  So that authors get the same results everywhere

  # Pins: a jq evaluation error in `set` faults with the expression error
  # (type .../errors/expression, status 400) and instance = the task reference.
  Scenario: A jq Error In Set Faults With The Expression Error
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: jq-error-in-set, version: '1.0.0'}
    do:
      - prepare:
          set:
            name: ada
      - broken:
          set:
            value: ${ .name + 1 }
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/expression
    status: 400
    instance: /do/1/broken
    """

  # Pins: a failing expression in a task's `output.as` is an expression error of that task.
  Scenario: A jq Error In Output As Faults With The Expression Error
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: jq-error-in-output-as, version: '1.0.0'}
    do:
      - shape:
          set:
            value: 1
          output:
            as: error("cannot shape this")
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/expression
    status: 400
    instance: /do/0/shape
    """

  # Pins: jq's `$ENV` and `env` do not expose the process environment; both are `{}` (DESIGN).
  Scenario: $ENV And env Are Empty
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: env-is-empty, version: '1.0.0'}
    do:
      - peek:
          set:
            dollarEnv: ${ $ENV }
            envBuiltin: ${ env }
            path: ${ $ENV.PATH }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    dollarEnv: {}
    envBuiltin: {}
    path: null
    """

  # Pins: `$runtime.name` is "flowkeeper".
  Scenario: The Runtime Name Is flowkeeper
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: runtime-name, version: '1.0.0'}
    do:
      - whoRuns:
          set:
            runtime: ${ $runtime.name }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    runtime: flowkeeper
    """

  # Pins: `$task.name` and `$task.reference` describe the current task.
  Scenario: The Task Descriptor
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: task-descriptor, version: '1.0.0'}
    do:
      - first:
          set:
            skip: true
      - group:
          do:
            - whoAmI:
                set:
                  name: ${ $task.name }
                  reference: ${ $task.reference }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    name: whoAmI
    reference: /do/1/group/do/0/whoAmI
    """

  # Pins: `$workflow` exposes the instance id (a string), the parsed definition and the
  # start time descriptor.
  Scenario: The Workflow Descriptor
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: workflow-descriptor, version: '1.0.0'}
    do:
      - describe:
          set:
            idType: ${ $workflow.id | type }
            idNotEmpty: ${ ($workflow.id | length) > 0 }
            name: ${ $workflow.definition.document.name }
            version: ${ $workflow.definition.document.version }
            startedType: ${ $workflow.startedAt.iso8601 | type }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    idType: string
    idNotEmpty: true
    name: workflow-descriptor
    version: 1.0.0
    startedType: string
    """

  # Pins: in strict mode a string without `${ }` is a literal, even when it looks like jq.
  Scenario: Strings Without ${ } Are Literals
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: strict-literals, version: '1.0.0'}
    do:
      - mix:
          set:
            literal: .name
            evaluated: ${ .name }
            pipe: 'a | b'
    """
    And given the workflow input is:
    """yaml
    name: ada
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    literal: .name
    evaluated: ada
    pipe: a | b
    """

  # Pins: only-expression fields (`if`, `input.from`, `output.as`, switch `when`) accept
  # both bare jq and `${ }`, with the same result.
  Scenario: Bare jq And ${ } Are Equivalent In Only-expression Fields
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: bare-and-wrapped-expressions, version: '1.0.0'}
    do:
      - bare:
          if: .go
          input:
            from: .payload
          set:
            v: ${ .v + 1 }
          output:
            as: .v
      - wrapped:
          if: ${ . == 2 }
          input:
            from: '${ {v: .} }'
          set:
            v: ${ .v * 10 }
          output:
            as: ${ .v }
      - pick:
          switch:
            - twenty:
                when: ${ . == 20 }
                then: saidYes
            - other:
                when: . != 20
                then: saidNo
      - saidYes:
          set:
            result: matched
          then: end
      - saidNo:
          set:
            result: unmatched
    """
    And given the workflow input is:
    """yaml
    go: true
    payload:
      v: 1
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    result: matched
    """

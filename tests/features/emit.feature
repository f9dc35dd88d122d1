Feature: Emit Task
  As the Flowkeeper team
  We want emit tasks to produce well-formed CloudEvents
  So that consumers (and the workflow itself) see what was emitted

  # Pins: emit's output is the emitted CloudEvent: a generated `id`, `specversion` 1.0,
  # a `time`, and the given `source`, `type` and `data`.
  Scenario: Emit Outputs The CloudEvent
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: emit-outputs-cloudevent, version: '1.0.0'}
    do:
      - announce:
          emit:
            event:
              with:
                source: https://example.com/orders
                type: com.example.order.created.v1
                data:
                  orderId: ${ .orderId }
                  total: 12.5
    """
    And given the workflow input is:
    """yaml
    orderId: o-3
    """
    When the workflow is executed
    Then the workflow should complete
    And the workflow output should have properties 'id', 'specversion', 'time', 'source', 'type', 'data'
    And the workflow output should have a 'specversion' property with value:
    """yaml
    '1.0'
    """
    And the workflow output should have a 'source' property with value:
    """yaml
    https://example.com/orders
    """
    And the workflow output should have a 'type' property with value:
    """yaml
    com.example.order.created.v1
    """
    And the workflow output should have a 'data' property with value:
    """yaml
    orderId: o-3
    total: 12.5
    """

  # Pins: custom attributes (`subject`, `datacontenttype`, an extension attribute) are
  # carried on the emitted event.
  Scenario: Emit With Custom Attributes
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: emit-custom-attributes, version: '1.0.0'}
    do:
      - announce:
          emit:
            event:
              with:
                source: https://example.com/orders
                type: com.example.order.created.v1
                subject: ${ "order-\(.orderId)" }
                datacontenttype: application/json
                region: eu-west
                data:
                  orderId: ${ .orderId }
    """
    And given the workflow input is:
    """yaml
    orderId: 77
    """
    When the workflow is executed
    Then the workflow should complete
    And the workflow output should have a 'subject' property with value:
    """yaml
    order-77
    """
    And the workflow output should have a 'datacontenttype' property with value:
    """yaml
    application/json
    """
    And the workflow output should have a 'region' property with value:
    """yaml
    eu-west
    """

  # Pins: `source` and `type` may be runtime expressions.
  Scenario: Emit With Source And Type From Expressions
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: emit-expression-attributes, version: '1.0.0'}
    do:
      - announce:
          emit:
            event:
              with:
                source: ${ "https://example.com/tenants/\(.tenant)" }
                type: ${ "com.example.\(.kind).v1" }
                data:
                  tenant: ${ .tenant }
          output:
            as: '${ {source, type, data} }'
    """
    And given the workflow input is:
    """yaml
    tenant: acme
    kind: invoice.sent
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    source: https://example.com/tenants/acme
    type: com.example.invoice.sent.v1
    data:
      tenant: acme
    """

  # Pins: the emitted event becomes the next task's input, and two emits get distinct ids.
  Scenario: Emitted Events Flow On And Have Distinct Ids
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: emit-flow-distinct-ids, version: '1.0.0'}
    do:
      - first:
          emit:
            event:
              with:
                source: https://example.com/orders
                type: com.example.order.created.v1
                data:
                  n: 1
          export:
            as: '${ {firstId: .id} }'
      - second:
          emit:
            event:
              with:
                source: https://example.com/orders
                type: com.example.order.created.v1
                data:
                  n: 2
      - inspect:
          set:
            type: ${ .type }
            n: ${ .data.n }
            distinct: ${ $context.firstId != .id }
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    type: com.example.order.created.v1
    n: 2
    distinct: true
    """

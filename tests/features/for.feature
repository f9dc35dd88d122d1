Feature: For Task
  As the Flowkeeper team
  We want for loops to iterate, thread data between iterations and stop as configured
  So that batch processing behaves predictably

  # Pins: the default loop variables are `$item` and `$index`; data threads through
  # iterations and the for's output is the last iteration's output.
  Scenario: For With Default Item And Index Variables
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: for-default-variables, version: '1.0.0'}
    do:
      - loop:
          for:
            in: .letters
          do:
            - collect:
                set:
                  seen: ${ .seen + ["\($index):\($item)"] }
    """
    And given the workflow input is:
    """yaml
    letters: [x, y, z]
    seen: []
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    seen: ['0:x', '1:y', '2:z']
    """

  # Pins: `for.each` and `for.at` rename the item and index variables.
  Scenario: For With Custom Each And At Names
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: for-custom-names, version: '1.0.0'}
    do:
      - loop:
          for:
            each: fruit
            at: position
            in: ${ .basket }
          do:
            - collect:
                set:
                  picked: '${ .picked + [{position: $position, fruit: $fruit}] }'
    """
    And given the workflow input is:
    """yaml
    basket: [apple, pear]
    picked: []
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    picked:
      - position: 0
        fruit: apple
      - position: 1
        fruit: pear
    """

  # Pins: `while` stops the loop once its condition, evaluated on the current data,
  # no longer holds (1 + 2 + 3 reaches 6, so 4 and 5 are not added).
  Scenario: For With While Stops Early
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: for-while, version: '1.0.0'}
    do:
      - accumulate:
          for:
            in: .numbers
          while: .total < 5
          do:
            - add:
                set:
                  total: ${ .total + $item }
                  last: ${ $item }
    """
    And given the workflow input is:
    """yaml
    numbers: [1, 2, 3, 4, 5]
    total: 0
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    total: 6
    last: 3
    """

  # Pins: a for over an empty collection runs no iteration and passes its input through.
  Scenario: For Over An Empty List
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: for-empty-list, version: '1.0.0'}
    do:
      - loop:
          for:
            in: .items
          do:
            - touch:
                set:
                  touched: true
    """
    And given the workflow input is:
    """yaml
    items: []
    untouched: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    items: []
    untouched: true
    """
    And touch should not run

  # Pins: a call inside a for body runs once per item with the item in its body.
  Scenario: For Posts Each Item
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: for-post-each, version: '1.0.0'}
    do:
      - send:
          for:
            each: sku
            in: .skus
          do:
            - post:
                call: http
                with:
                  method: post
                  endpoint:
                    uri: '{{STANDIN}}/rec/for-post-each'
                  body:
                    sku: ${ $sku }
    """
    And given the workflow input is:
    """yaml
    skus: [s-1, s-2, s-3]
    """
    When the workflow is executed
    Then the workflow should complete
    And the stand-in should have received 3 requests at '/rec/for-post-each'
    And the stand-in should have received at '/rec/for-post-each' the body:
    """yaml
    sku: s-2
    """
    And the workflow output should have a 'count' property with value:
    """yaml
    3
    """

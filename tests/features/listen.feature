Feature: Listen Task
  As the Flowkeeper team
  We want listen tasks to consume the events the workflow itself emits
  So that event filters, consumption strategies, correlation and read modes behave as the DSL says

  # With the CLI only, events come from the workflow itself: one fork branch listens,
  # a sibling branch waits briefly (so the listener's bookmark exists) and then emits.
  # Emitted events are routed to matching bookmarks inside the engine, same instance included.

  # Pins: `listen.to.one` consumes the event emitted by a sibling fork branch; the
  # listen output is an array of the consumed events read as `data` (the default).
  Scenario: Listen To One Event Emitted By A Sibling Branch
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-one-sibling-branch, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForOrder:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.order.placed.v1
              - placeOrder:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - publish:
                        emit:
                          event:
                            with:
                              source: https://example.com/orders
                              type: com.example.order.placed.v1
                              data:
                                orderId: o-1
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - orderId: o-1
    """

  # Pins: a runtime expression in a filter's `data` attribute is evaluated against the
  # event data; only an event for which it is true is consumed.
  Scenario: Listen Filter With A Data Expression
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-data-expression-filter, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForLargeOrder:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.order.placed.v1
                          data: ${ .amount > 100 }
              - publishOrders:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - publishSmall:
                        emit:
                          event:
                            with:
                              source: https://example.com/orders
                              type: com.example.order.placed.v1
                              data:
                                amount: 50
                    - publishLarge:
                        emit:
                          event:
                            with:
                              source: https://example.com/orders
                              type: com.example.order.placed.v1
                              data:
                                amount: 150
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - amount: 150
    """

  # Pins: `listen.to.any` without `until` completes on the first event matching any of
  # its filters (here the second filter); non-matching events are ignored.
  Scenario: Listen To Any Completes On The First Matching Event
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-any-first-match, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForVitals:
                  listen:
                    to:
                      any:
                        - with:
                            type: com.example.vitals.temperature.v1
                        - with:
                            type: com.example.vitals.bpm.v1
              - measure:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - publishUnrelated:
                        emit:
                          event:
                            with:
                              source: https://example.com/vitals
                              type: com.example.vitals.weight.v1
                              data:
                                kg: 70
                    - publishBpm:
                        emit:
                          event:
                            with:
                              source: https://example.com/vitals
                              type: com.example.vitals.bpm.v1
                              data:
                                bpm: 120
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - bpm: 120
    """

  # Pins: `any` with an `until` runtime expression keeps consuming events until the
  # expression (over the events consumed so far) holds; later events are not consumed.
  Scenario: Listen To Any Until An Expression Holds
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-any-until-expression, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - collectTicks:
                  listen:
                    to:
                      any:
                        - with:
                            type: com.example.clock.tick.v1
                      until: ( . | length ) >= 2
              - tick:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - tick1:
                        emit:
                          event:
                            with:
                              source: https://example.com/clock
                              type: com.example.clock.tick.v1
                              data:
                                n: 1
                    - pause1:
                        wait:
                          milliseconds: 50
                    - tick2:
                        emit:
                          event:
                            with:
                              source: https://example.com/clock
                              type: com.example.clock.tick.v1
                              data:
                                n: 2
                    - pause2:
                        wait:
                          milliseconds: 50
                    - tick3:
                        emit:
                          event:
                            with:
                              source: https://example.com/clock
                              type: com.example.clock.tick.v1
                              data:
                                n: 3
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - n: 1
    - n: 2
    """

  # Pins: `any` with an `until` event-consumption strategy stops listening when the
  # `until` event arrives, and that event is not part of the listen output.
  Scenario: Listen To Any Until A Stop Event Is Consumed
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-any-until-event, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - collectReadings:
                  listen:
                    to:
                      any:
                        - with:
                            type: com.example.sensor.reading.v1
                      until:
                        one:
                          with:
                            type: com.example.sensor.stopped.v1
              - sensor:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - reading1:
                        emit:
                          event:
                            with:
                              source: https://example.com/sensor
                              type: com.example.sensor.reading.v1
                              data:
                                value: 10
                    - pause1:
                        wait:
                          milliseconds: 50
                    - reading2:
                        emit:
                          event:
                            with:
                              source: https://example.com/sensor
                              type: com.example.sensor.reading.v1
                              data:
                                value: 20
                    - pause2:
                        wait:
                          milliseconds: 50
                    - stop:
                        emit:
                          event:
                            with:
                              source: https://example.com/sensor
                              type: com.example.sensor.stopped.v1
                              data:
                                reason: done
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - value: 10
    - value: 20
    """

  # Pins: `listen.to.all` waits for one event per filter, in any arrival order, and its
  # output lists the consumed events in the order they were consumed.
  Scenario: Listen To All Events In Any Order
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-all-any-order, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForBoth:
                  listen:
                    to:
                      all:
                        - with:
                            type: com.example.check.credit.v1
                        - with:
                            type: com.example.check.fraud.v1
              - checks:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - fraudChecked:
                        emit:
                          event:
                            with:
                              source: https://example.com/checks
                              type: com.example.check.fraud.v1
                              data:
                                check: fraud
                    - pause:
                        wait:
                          milliseconds: 50
                    - creditChecked:
                        emit:
                          event:
                            with:
                              source: https://example.com/checks
                              type: com.example.check.credit.v1
                              data:
                                check: credit
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - check: fraud
    - check: credit
    """

  # Pins: `all` is not satisfied by only some of its events: the instance stays
  # suspended (CLI exit 3) waiting for the missing one.
  Scenario: Listen To All Stays Suspended Until Every Event Arrived
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-all-partial, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForBoth:
                  listen:
                    to:
                      all:
                        - with:
                            type: com.example.approval.manager.v1
                        - with:
                            type: com.example.approval.finance.v1
              - approvals:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - managerApproved:
                        emit:
                          event:
                            with:
                              source: https://example.com/approvals
                              type: com.example.approval.manager.v1
                              data:
                                by: manager
    """
    When the workflow is executed with a wait of 1 seconds
    Then the workflow should be suspended

  # Pins: correlation with `from` (evaluated on the event) and `expect` (a runtime
  # expression on the task input): only the event whose value matches is consumed.
  Scenario: Listen With Correlation And An Expected Value From The Input
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-correlate-expect-expression, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForMyOrder:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.order.paid.v1
                        correlate:
                          orderId:
                            from: ${ .data.orderId }
                            expect: ${ .orderId }
              - payments:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - otherOrderPaid:
                        emit:
                          event:
                            with:
                              source: https://example.com/payments
                              type: com.example.order.paid.v1
                              data:
                                orderId: o-1
                                amount: 10
                    - pause:
                        wait:
                          milliseconds: 50
                    - myOrderPaid:
                        emit:
                          event:
                            with:
                              source: https://example.com/payments
                              type: com.example.order.paid.v1
                              data:
                                orderId: o-2
                                amount: 20
          output:
            as: .[0]
    """
    And given the workflow input is:
    """yaml
    orderId: o-2
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - orderId: o-2
      amount: 20
    """

  # Pins: correlation `expect` given as a constant (not a runtime expression).
  Scenario: Listen With Correlation And A Constant Expected Value
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-correlate-expect-constant, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForEurope:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.region.report.v1
                        correlate:
                          region:
                            from: ${ .data.region }
                            expect: eu
              - reports:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - usReport:
                        emit:
                          event:
                            with:
                              source: https://example.com/reports
                              type: com.example.region.report.v1
                              data:
                                region: us
                    - pause:
                        wait:
                          milliseconds: 50
                    - euReport:
                        emit:
                          event:
                            with:
                              source: https://example.com/reports
                              type: com.example.region.report.v1
                              data:
                                region: eu
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - region: eu
    """

  # Pins: correlation without `expect`: the first extracted value becomes the
  # expectation, so a later event with another value is not consumed by `all`.
  Scenario: Listen To All With Correlation Without Expect
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-all-correlate-first-value, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForSameCustomer:
                  listen:
                    to:
                      all:
                        - with:
                            type: com.example.cart.checked-out.v1
                          correlate:
                            customer:
                              from: ${ .data.customer }
                        - with:
                            type: com.example.invoice.paid.v1
                          correlate:
                            customer:
                              from: ${ .data.customer }
              - shop:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - checkoutC1:
                        emit:
                          event:
                            with:
                              source: https://example.com/shop
                              type: com.example.cart.checked-out.v1
                              data:
                                customer: c1
                                doc: cart
                    - pause1:
                        wait:
                          milliseconds: 50
                    - invoiceC2:
                        emit:
                          event:
                            with:
                              source: https://example.com/shop
                              type: com.example.invoice.paid.v1
                              data:
                                customer: c2
                                doc: invoice-2
                    - pause2:
                        wait:
                          milliseconds: 50
                    - invoiceC1:
                        emit:
                          event:
                            with:
                              source: https://example.com/shop
                              type: com.example.invoice.paid.v1
                              data:
                                customer: c1
                                doc: invoice-1
          output:
            as: .[0]
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    - customer: c1
      doc: cart
    - customer: c1
      doc: invoice-1
    """

  # Pins: an event whose correlation value differs from the expectation is never
  # consumed; the instance stays suspended.
  Scenario: Listen With A Correlation That Never Matches Stays Suspended
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-correlate-mismatch, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForMyOrder:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.order.paid.v1
                        correlate:
                          orderId:
                            from: ${ .data.orderId }
                            expect: ${ .orderId }
              - payments:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - otherOrderPaid:
                        emit:
                          event:
                            with:
                              source: https://example.com/payments
                              type: com.example.order.paid.v1
                              data:
                                orderId: o-9
    """
    And given the workflow input is:
    """yaml
    orderId: o-2
    """
    When the workflow is executed with a wait of 1 seconds
    Then the workflow should be suspended

  # Pins: `read: envelope` yields whole CloudEvents (context attributes and data)
  # instead of only their data.
  Scenario: Listen Reading Event Envelopes
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-read-envelope, version: '1.0.0'}
    do:
      - rendezvous:
          fork:
            branches:
              - waitForGreeting:
                  listen:
                    to:
                      one:
                        with:
                          type: com.example.greeting.v1
                    read: envelope
              - greet:
                  do:
                    - settle:
                        wait:
                          milliseconds: 100
                    - publish:
                        emit:
                          event:
                            with:
                              source: https://example.com/greeter
                              type: com.example.greeting.v1
                              subject: alice
                              data:
                                text: hello
          output:
            as: .[0][0]
    """
    When the workflow is executed
    Then the workflow should complete
    And the workflow output should have properties 'id', 'specversion', 'time', 'source', 'type', 'data'
    And the workflow output should have a 'type' property with value:
    """yaml
    com.example.greeting.v1
    """
    And the workflow output should have a 'subject' property with value:
    """yaml
    alice
    """
    And the workflow output should have a 'data' property with value:
    """yaml
    text: hello
    """

  # Pins: a listen that nothing can satisfy leaves the instance suspended (CLI exit 3,
  # status "suspended"); the CLI returns instead of hanging.
  Scenario: Listen With No Event Leaves The Workflow Suspended
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: listen-nothing-arrives, version: '1.0.0'}
    do:
      - waitForever:
          listen:
            to:
              one:
                with:
                  type: com.example.never.v1
      - after:
          set:
            reached: true
    """
    When the workflow is executed with a wait of 1 seconds
    Then the workflow should be suspended
    And after should not run

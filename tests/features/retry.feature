Feature: Retries
  As the Flowkeeper team
  We want catch clauses with retry policies to re-run failed tasks with the configured back-off
  So that transient failures recover and exhausted retries fail the way DESIGN.md says

  # The stand-in's /flaky/<path>?fail=N answers 503 to the first N requests on <path>,
  # then 200 {ok: true, attempts: n}.

  # Pins: constant back-off retries a failing call until it succeeds; the call is made
  # once per attempt, every attempt carries an Idempotency-Key, and each retry waits `delay`.
  Scenario: Retry With Constant Back-off Until The Call Succeeds
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-constant-backoff, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-constant?fail=2'
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/spec/1.0.0/errors/communication
                status: 503
            retry:
              delay:
                milliseconds: 200
              backoff:
                constant: {}
              limit:
                attempt:
                  count: 3
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    ok: true
    attempts: 3
    """
    And the stand-in should have received 3 requests at '/flaky/retry-constant'
    And every request at '/flaky/retry-constant' should carry a header 'Idempotency-Key'
    And the run should take at least 0.4 seconds

  # Pins: linear back-off waits delay x n before the n-th retry (200 ms + 400 ms here,
  # more than the 400 ms a constant back-off would take).
  Scenario: Retry With Linear Back-off
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-linear-backoff, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-linear?fail=2'
          catch:
            errors:
              with:
                status: 503
            retry:
              delay:
                milliseconds: 200
              backoff:
                linear: {}
              limit:
                attempt:
                  count: 3
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    ok: true
    attempts: 3
    """
    And the stand-in should have received 3 requests at '/flaky/retry-linear'
    And the run should take at least 0.6 seconds

  # Pins: exponential back-off waits delay x 2^(n-1) before the n-th retry
  # (200 + 400 + 800 ms here, more than linear's 1.2 s).
  Scenario: Retry With Exponential Back-off
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-exponential-backoff, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-exponential?fail=3'
          catch:
            errors:
              with:
                type: https://serverlessworkflow.io/dsl/errors/types/communication
            retry:
              delay:
                milliseconds: 200
              backoff:
                exponential: {}
              limit:
                attempt:
                  count: 3
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    ok: true
    attempts: 4
    """
    And the stand-in should have received 4 requests at '/flaky/retry-exponential'
    And the run should take at least 1.4 seconds

  # Pins: when retries run out, the last error propagates (DESIGN) and the catch's `do`
  # does not run; `limit.attempt.count: 2` means 1 attempt + 2 retries = 3 requests.
  Scenario: Exhausted Retries Propagate The Last Error
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-exhausted, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-exhausted?fail=5'
          catch:
            errors:
              with:
                status: 503
            retry:
              delay:
                milliseconds: 50
              limit:
                attempt:
                  count: 2
            do:
              - handled:
                  set:
                    handled: true
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    status: 503
    instance: /do/0/fetchWithRetry/try/0/fetch
    """
    And the stand-in should have received 3 requests at '/flaky/retry-exhausted'
    And handled should not run

  # Pins: `limit.attempt.count` counts retries after the first attempt: a count of 1
  # makes exactly 2 requests, so two failures in a row fault the workflow.
  Scenario: Attempt Count Limits Retries After The First Attempt
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-count-one, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-count-one?fail=2'
          catch:
            errors:
              with:
                status: 503
            retry:
              delay:
                milliseconds: 50
              limit:
                attempt:
                  count: 1
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    status: 503
    """
    And the stand-in should have received 2 requests at '/flaky/retry-count-one'

  # Pins: a retry policy referenced by name from `use.retries`; once a retry succeeds
  # the catch's `do` does not run and the call's output flows on.
  Scenario: Reusable Retry Policy From use.retries
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-reusable-policy, version: '1.0.0'}
    use:
      retries:
        quick:
          delay:
            milliseconds: 100
          backoff:
            constant: {}
          limit:
            attempt:
              count: 3
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-reusable?fail=2'
          catch:
            errors:
              with:
                status: 503
            retry: quick
            do:
              - fallback:
                  set:
                    fallback: true
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    ok: true
    attempts: 3
    """
    And the stand-in should have received 3 requests at '/flaky/retry-reusable'
    And fallback should not run

  # Pins: an error that the catch's filter does not match is not retried: one request,
  # and the error faults the workflow.
  Scenario: Errors Not Matching The Filter Are Not Retried
    Given a workflow with definition:
    """yaml
    document: {dsl: '1.0.3', namespace: test, name: retry-filter-mismatch, version: '1.0.0'}
    do:
      - fetchWithRetry:
          try:
            - fetch:
                call: http
                with:
                  method: get
                  endpoint:
                    uri: '{{STANDIN}}/flaky/retry-mismatch?fail=2'
          catch:
            errors:
              with:
                status: 404
            retry:
              delay:
                milliseconds: 50
              limit:
                attempt:
                  count: 3
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    status: 503
    """
    And the stand-in should have received 1 request at '/flaky/retry-mismatch'

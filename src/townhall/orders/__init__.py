"""Orders: an event-sourced order whose workflow runs as a saga over inventory, payments and
shipping (issue 21). See README.md; `domain` is the aggregate, `saga` the state machine.
"""

"""The `stream` process (daphne + Channels): Server-Sent-Event consumers and what feeds them, DESIGN.md §5.

`sse` frames events; `dual_gate` and `dual` serve the dual-model stream, `dual_models` its routes and
runs, `recorder` its DualRunRecords; `live` serves the live page stream from `hub`; `live_page` is
the page itself (a Django view of the `web` process); `metrics` counts both streams.

``POST /stream/v1/infer`` (`DualInferConsumer`): the body and authentication of ``POST
/v1/infer``; both of the product's dual models (`mlops.models.DualModelConfig`) start at once;
``preliminary`` (fast model) and ``final`` (full model) as each is ready, ``error`` for a model
that timed out or failed, and always ``done`` last. Event schema v1: see the README, "Streams".

``/stream/live/<product>/`` (`LiveConsumer`): every logged prediction of a product as it
happens, for staff (session), fed by the channel-layer group ``predictions.<product>`` that
the prediction log writer publishes to (`audit.publish`), sampled down to
``LIVE_MAX_EVENTS_PER_SECOND`` per subscriber, with heartbeats and ``Last-Event-ID`` resume.

Both are written so that they *receive ``http.disconnect`` while they stream*: Channels'
`AsyncHttpConsumer` handles one message at a time, so a ``handle()`` that loops never sees
the disconnect (channels #1249, #1302). The dual consumer streams from a task while its
``__call__`` keeps reading the connection; the live consumer returns from the request handler
after subscribing and sends from its channel-layer handlers and a ticker task.
"""

"""The hot lane: ``POST /v1/infer``, ``POST /v1/infer/batch`` and ``GET /v1/infer/{id}`` without
Django's request cycle or DRF's dispatch, as an RSGI application on granian (the ``infer`` process
type of the Procfile).

Why a lane of its own: through gunicorn, Django's middleware and DRF a request that does nothing
(``GET /healthz``) costs more server CPU than KServe's model server spends on a whole prediction
(bench/README.md). The lane keeps what a prediction needs and nothing else, and calls the very
code the DRF views call: credentials (`mlops.security.authentication.principal_from_headers`),
rate limits (`mlops.security.ratelimits.check_caller`), the capability check
(`mlops.api.permissions.denial_message`), the endpoint work (`inference.api`) and the error
answers (`inference.errors`, `mlops.api.errors.api_error`). The DRF views stay the reference
implementation and serve the embedded default; tests/inference/lane runs one contract suite
against both lanes.

- `endpoints`: the lane's routes and ``handle(request)``, synchronous and transport-free (what the
  contract tests call in process).
- `http`: the request and answer types, and the headers every answer carries.
- `app`: the RSGI application granian serves (``granian --interface rsgi inference.lane.app:app``):
  reads bodies, runs ``handle`` on the event loop when it cannot block and on a thread when it
  may (reading a recorded prediction, or a credential the in-process cache has not loaded yet),
  and flushes the prediction log when its worker stops.
"""

"""`wanlean batch`: many prompts through a saved ComfyUI workflow, over one or more ComfyUI servers.

`workflow` reads and fills workflows (UI or API format), `client` talks to a server over its HTTP API
(standard library only), `ledger` keeps the append-only job record that makes a re-run resume, and
`runner` schedules jobs over the servers. Nothing here imports ComfyUI: the servers are the engine.
"""

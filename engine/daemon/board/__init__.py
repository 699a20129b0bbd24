"""The status board (PRODUCT.md §9): a read-only web page served by `riskc run`, with live
updates over server-sent events and the same data as JSON at ``/api/status``.

- ``status.py``: ``status_json(daemon)``, the document (keys named as the snapshot and §6.2);
- ``server.py``: the aiohttp app (loopback or token, Host check, SSE) and its start/stop;
- ``series.py``: the day's P&L samples behind the chart;
- ``static/``: the page, its script and style (package data: no CDN, no build step).
"""

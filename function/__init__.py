"""Newsgroup topic classifier served over HTTP (aiohttp + onnxruntime in a process pool).

Kept free of imports so that pool workers, which import ``function.parallel.worker``, load only
onnxruntime and numpy. Build the service with ``function.app.create_app(Settings(...))``.
"""

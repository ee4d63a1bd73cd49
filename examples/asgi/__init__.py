"""The async deployment example: ASGI apps with module-global async clients (redis.asyncio,
asyncpg) under ``gunicorn -k uvicorn.workers.UvicornWorker``, and their proof (``prove.py``)."""

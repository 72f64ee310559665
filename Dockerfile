# The streamapp image used by compose.yaml: every process is `streamapp <sub-command>`.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY streamapp streamapp
COPY agents agents
COPY records records
COPY deploy deploy
COPY bench bench
RUN pip install --no-cache-dir .
ENTRYPOINT ["streamapp"]

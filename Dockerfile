# The billing engine's image: the `billing` command (worker, sink, simulate, demo, query).
# Configured by KAFKA_BOOTSTRAP_SERVERS, CLICKHOUSE_URL and DATABASE_URL (docs/operations.md).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rating rating
COPY invoicing invoicing
COPY streams streams
COPY schemas schemas
COPY billing billing
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --uid 10001 billing \
    && mkdir -p /state && chown billing /state
USER billing
ENTRYPOINT ["billing"]
CMD ["--help"]

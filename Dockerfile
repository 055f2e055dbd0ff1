# The billing engine's image: the `billing` command (worker, sink, simulate, demo, query).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rating rating
COPY invoicing invoicing
COPY streams streams
COPY schemas schemas
COPY billing billing
RUN pip install --no-cache-dir .
ENTRYPOINT ["billing"]
CMD ["--help"]

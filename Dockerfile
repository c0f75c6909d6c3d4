# The worker image for docker-compose.yml (users with Docker; CI and the local default need none).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY sinks sinks
COPY schemas schemas
RUN pip install --no-cache-dir .
ENTRYPOINT ["milestones"]
CMD ["worker"]

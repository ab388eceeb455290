# One image for every service of Data-in-Motion (flow, solver, mover, api); the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dim ./dim
COPY schemas ./schemas
COPY flows ./flows
COPY solver ./solver
COPY mover ./mover
COPY api ./api
COPY data ./data
RUN pip install --no-cache-dir .
# Configuration comes from the environment only (DIM_<SECTION>__<FIELD>, the same names as the embedded stack).
ENTRYPOINT ["dim"]
CMD ["--help"]

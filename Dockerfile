# Image for the distributed topology (docker-compose.yaml): Airflow 3.3 + the project's
# pinned stack + this repository's package. Build: docker compose build
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/mlcycle/requirements.txt
RUN pip install --no-cache-dir -r /opt/mlcycle/requirements.txt \
      "apache-airflow-providers-celery" "apache-airflow-providers-postgres" "psycopg2-binary"
COPY --chown=airflow:root pyproject.toml README.md /opt/mlcycle/
COPY --chown=airflow:root include /opt/mlcycle/include
RUN pip install --no-cache-dir --no-deps -e /opt/mlcycle

# Image of the distributed topology (docker-compose.yaml, deploy/helm/values.yaml): Airflow 3.3,
# the project's pinned stack (requirements.txt: Celery, FAB, PostgreSQL, s3fs, mlflow[auth]) and
# this repository at /opt/mlcycle (MLCYCLE_HOME). Build: docker compose build
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /opt/mlcycle/requirements.txt
RUN pip install --no-cache-dir -r /opt/mlcycle/requirements.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/mlcycle/
COPY --chown=airflow:root include /opt/mlcycle/include
COPY --chown=airflow:root dags /opt/mlcycle/dags
COPY --chown=airflow:root plugins /opt/mlcycle/plugins
COPY --chown=airflow:root deploy /opt/mlcycle/deploy
RUN pip install --no-cache-dir --no-deps -e /opt/mlcycle
ENV MLCYCLE_HOME=/opt/mlcycle

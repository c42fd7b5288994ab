"""The lakehouse's weekly maintenance as an Airflow DAG: OPTIMIZE, VACUUM and the full quality scan.

Built by `lakehouse.emr.airflow_dags.maintenance_dag` from `SPEC`, which `lakehouse emr airflow
--env ENV` renders into `lakehouse_airflow_spec.py` beside this file (docs/EMR.md, "Airflow").
"""

from lakehouse_airflow_spec import SPEC

from lakehouse.emr.airflow_dags import maintenance_dag

dag = maintenance_dag(SPEC)

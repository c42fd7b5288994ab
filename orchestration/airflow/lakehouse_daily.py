"""The lakehouse's daily pipeline as an Airflow DAG: bronze -> silver -> quality -> gold on EMR.

Built by `lakehouse.emr.airflow_dags.daily_dag` from `SPEC`, which `lakehouse emr airflow --env ENV`
renders into `lakehouse_airflow_spec.py` beside this file (docs/EMR.md, "Airflow").
"""

from lakehouse_airflow_spec import SPEC

from lakehouse.emr.airflow_dags import daily_dag

dag = daily_dag(SPEC)

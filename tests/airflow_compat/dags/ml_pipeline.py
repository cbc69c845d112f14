from airflow import DAG
from airflow.operators.python import PythonOperator
from datetime import datetime

def ingest():
    print('Data ingested')

def preprocess():
    print('Data preprocessed')

with DAG('ml_pipeline', start_date=datetime(2024,1,1), schedule_interval='@daily') as dag:
    t1 = PythonOperator(task_id='ingest', python_callable=ingest)
    t2 = PythonOperator(task_id='preprocess', python_callable=preprocess)
    t1 >> t2

from airflow import DAG
from airflow.providers.amazon.aws.operators.s3 import S3CreateBucketOperator

"""@task.bash, @task.branch and @task.short_circuit."""
from datetime import datetime

from airflow.decorators import dag, task


@dag(schedule=None, start_date=datetime(2024, 1, 1))
def decorated_kinds():
    @task.bash
    def say(word: str):
        return f"echo {word}-from-bash"

    @task.branch
    def pick():
        return "left"

    @task
    def left():
        return "went left"

    @task
    def right():
        return "went right"

    @task.short_circuit
    def gate():
        return False

    @task
    def behind_gate():
        return "ran"

    say("hi")
    pick() >> [left(), right()]
    gate() >> behind_gate()


decorated_kinds()

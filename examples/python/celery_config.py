"""The Celery configuration celery_app.py runs with, apart from its table: a client that only
sends tasks (servers.py) makes its app here, without importing celery_app and loading the table.

The broker and the result store are directories (kombu's filesystem transport, Celery's file
result backend): no server to run, one machine."""
import os

from celery import Celery


def make_app(directory):
    """A Celery app named celery_app, its queue and results under directory."""
    queue = os.path.join(directory, "queue")
    for d in (queue, os.path.join(directory, "results"), os.path.join(directory, "rendezvous")):
        os.makedirs(d, exist_ok=True)
    app = Celery("celery_app")
    app.conf.update(
        broker_url="filesystem://",
        broker_transport_options={"data_folder_in": queue, "data_folder_out": queue,
                                  "polling_interval": 0.05},
        result_backend="file://" + os.path.join(directory, "results"),
        worker_prefetch_multiplier=1,  # with -O fair: a task goes to an idle pool process
        task_acks_late=True,
        worker_hijack_root_logger=False,
    )
    return app

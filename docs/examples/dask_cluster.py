"""Start a Dask cluster for `ecofed-sim sweep --executor dask`: Slurm jobs through
dask-jobqueue, or, with --local, a stand-in on this machine that works the same way.

    python docs/examples/dask_cluster.py --jobs 8 --scheduler-file scheduler.json &
    ecofed-sim sweep my_sweep.yaml --executor dask --scheduler-file scheduler.json

It writes the scheduler file, prints the dashboard link and keeps the cluster up until
interrupted (Ctrl-C, SIGINT or SIGTERM). Each Slurm job is one single-threaded worker
process; a run's torch threads come from its scenario (training.threads), so give jobs
that many cores.
"""

from __future__ import annotations

import argparse
import signal
import time


def slurm_cluster(args: argparse.Namespace):
    from dask_jobqueue import SLURMCluster  # pip install 'ecofed_sim[dask]'

    cluster = SLURMCluster(queue=args.queue, cores=args.cores, processes=1,
                           memory=args.memory, walltime=args.walltime,
                           job_extra_directives=args.sbatch or [])
    cluster.scale(jobs=args.jobs)
    return cluster


def local_cluster(args: argparse.Namespace):
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True,
                        dashboard_address=":0")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--local", action="store_true", help="a stand-in on this machine")
    p.add_argument("--jobs", type=int, default=4, help="worker processes (Slurm jobs)")
    p.add_argument("--scheduler-file", default="scheduler.json")
    p.add_argument("--queue", default=None, help="Slurm partition")
    p.add_argument("--cores", type=int, default=1, help="cores per job")
    p.add_argument("--memory", default="8GB", help="memory per job")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--sbatch", action="append", help="extra #SBATCH lines, repeatable")
    args = p.parse_args()
    from dask.distributed import Client

    cluster = local_cluster(args) if args.local else slurm_cluster(args)
    client = Client(cluster)
    client.write_scheduler_file(args.scheduler_file)
    # Stop cleanly on Ctrl-C, and on SIGTERM (what Slurm and `kill` send). Started in the
    # background of a script, a process inherits SIGINT ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"scheduler file {args.scheduler_file}; dashboard {client.dashboard_link}",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()

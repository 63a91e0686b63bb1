"""Presets of `kind: json`: each is only a bundle of the generic keys, every one overridable."""

from __future__ import annotations

from typing import Any

# GitHub Actions: org = owner/repo, job = workflow run, steps = the run's jobs (job-apis.md §2).
# The outcome of a completed run is in `conclusion`, so the raw status is conclusion || status.
GITHUB_ACTIONS: dict[str, Any] = {
    "discover": {  # `discover: {group: octo-org}`: every repo of the org is an org here
        "path": "/orgs/{group}/repos", "params": {"per_page": 100}, "items": "@",
        "paging": {"style": "link", "max_pages": 20}, "address": "full_name",
    },
    "headers": {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
    "jobs": {
        "path": "/repos/{org}/actions/runs",
        "params": {"per_page": 100, "exclude_pull_requests": "true"},
        "items": "workflow_runs",
        "paging": {"style": "link", "max_pages": 10},
        "etag": True,
        "incremental": {"mode": "newest_first"},
        # a re-run keeps the run id and bumps run_attempt: each attempt is its own job, so
        # every attempt's finish is counted once; detail and steps read that attempt
        "detail_path": "/repos/{org}/actions/runs/{id}/attempts/{run_attempt}",
        "id": "join('#', [to_string(id), to_string(run_attempt)])",
        "type": "name",
        "status": "conclusion || status",
        "created_at": "created_at",
        "started_at": "run_started_at",
        "finished_at": "status == 'completed' && updated_at || null",
    },
    "steps": {
        "path": "/repos/{org}/actions/runs/{id}/attempts/{run_attempt}/jobs",
        "params": {"per_page": 100},
        "items": "jobs",
        "paging": {"style": "link", "max_pages": 5},
        "etag": True,
        "id": "id",
        "type": "name",
        "status": "conclusion || status",
        "attempt": "run_attempt",
        "started_at": "started_at",
        "finished_at": "completed_at",
    },
    "status_map": {
        "requested": "pending", "queued": "pending", "pending": "pending", "waiting": "pending",
        "action_required": "pending", "in_progress": "running",
        "success": "completed", "neutral": "completed", "skipped": "completed",
        "failure": "failed", "timed_out": "failed", "startup_failure": "failed",
        "cancelled": "cancelled",
    },
    "step_status_map": {
        "queued": "pending", "requested": "pending", "pending": "pending",
        "waiting": "blocked", "action_required": "blocked", "in_progress": "running",
        "success": "success", "neutral": "success", "skipped": "skipped",
        "failure": "failed", "timed_out": "failed", "startup_failure": "failed",
        "cancelled": "failed",
    },
}

# Airflow 2.x (api: v1, the default) or 3.x (api: v2 with auth.login airflow-jwt):
# org = the deployment, job = DAG run, steps = its task instances (job-apis.md §4).
AIRFLOW: dict[str, Any] = {
    "jobs": {
        "path": "/api/{api}/dags/~/dagRuns",
        "params": {"order_by": "updated_at"},
        "items": "dag_runs",
        "paging": {"style": "offset", "size_param": "limit", "page_size": 100,
                   "total": "total_entries", "max_pages": 20},
        "incremental": {"mode": "since", "since_param": "updated_at_gte",
                        "until_param": "updated_at_lte", "overlap": 60},
        "id": "join('/', [dag_id, dag_run_id])",
        "type": "dag_id",
        "status": "state",
        "created_at": "queued_at || start_date",
        "started_at": "start_date",
        "finished_at": "end_date",
    },
    "steps": {
        # incremental polls: every task instance changed since the last read, of all runs, in
        # one list (`~/~`); full polls (start, full_resync_interval): `path` per active run
        "stream": {
            "path": "/api/{api}/dags/~/dagRuns/~/taskInstances",
            "items": "task_instances",
            "paging": {"style": "offset", "size_param": "limit", "page_size": 100,
                       "total": "total_entries", "max_pages": 20},
            "incremental": {"mode": "since", "since_param": "updated_at_gte",
                            "until_param": "updated_at_lte", "overlap": 60},
            "job_id": "join('/', [dag_id, dag_run_id])",
        },
        "path": "/api/{api}/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        "items": "task_instances",
        "paging": {"style": "offset", "size_param": "limit", "page_size": 100,
                   "total": "total_entries", "max_pages": 10},
        "id": "join('/', [task_id, to_string(map_index)])",
        "type": "task_id",
        "status": "state || 'none'",
        "attempt": "try_number",
        "started_at": "start_date",
        "finished_at": "end_date",
    },
    "status_map": {"queued": "pending", "running": "running", "success": "completed",
                   "failed": "failed"},
    "step_status_map": {
        "none": "pending", "null": "pending", "scheduled": "pending", "queued": "pending",
        "running": "running", "restarting": "running", "deferred": "running",
        "up_for_retry": "running", "up_for_reschedule": "running",
        "awaiting_input": "blocked", "upstream_failed": "blocked",
        "success": "success", "failed": "failed", "skipped": "skipped", "removed": "skipped",
    },
}

# GitLab CI: org = project id (or URL-encoded path), job = pipeline (job_type = source),
# steps = its jobs including retried ones (job-apis.md §3).
GITLAB_CI: dict[str, Any] = {
    "discover": {  # `discover: {group: grp}`: every project of the group and its subgroups
        "path": "/api/v4/groups/{group_encoded}/projects",
        "params": {"per_page": 100, "include_subgroups": "true", "archived": "false"},
        "items": "@", "paging": {"style": "link", "max_pages": 20},
        "address": "path_with_namespace",
    },
    "auth": {"header": "PRIVATE-TOKEN", "scheme": ""},
    "jobs": {
        "path": "/api/v4/projects/{org_encoded}/pipelines",
        "params": {"per_page": 100, "order_by": "updated_at", "sort": "desc"},
        "items": "@",
        "paging": {"style": "link", "max_pages": 10},
        "incremental": {"mode": "since", "since_param": "updated_after",
                        "until_param": "updated_before", "overlap": 60},
        "detail_path": "/api/v4/projects/{org_encoded}/pipelines/{job_id}",
        "detail_changed": True,  # list items carry no started_at / finished_at / duration
        "id": "id",
        "type": "source",
        "status": "status",
        "created_at": "created_at",
        "started_at": "started_at",
        "finished_at": "finished_at",
        "duration": "duration",
    },
    "steps": {
        "path": "/api/v4/projects/{org_encoded}/pipelines/{job_id}/jobs",
        "params": {"per_page": 100, "include_retried": "true"},
        "items": "@",
        "paging": {"style": "link", "max_pages": 10},
        "id": "id",
        "type": "name",
        "status": "status",
        "started_at": "started_at",
        "finished_at": "finished_at",
    },
    "status_map": {
        "created": "pending", "waiting_for_resource": "pending", "preparing": "pending",
        "pending": "pending", "scheduled": "pending", "manual": "pending",
        "waiting_for_callback": "pending", "running": "running", "canceling": "running",
        "success": "completed", "failed": "failed", "canceled": "cancelled",
        "skipped": "completed",
    },
    "step_status_map": {
        "created": "pending", "waiting_for_resource": "pending", "preparing": "pending",
        "pending": "pending", "scheduled": "pending", "manual": "blocked",
        "waiting_for_callback": "blocked", "running": "running", "canceling": "running",
        "success": "success", "failed": "failed", "canceled": "failed", "skipped": "skipped",
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    "github-actions": GITHUB_ACTIONS,
    "gitlab-ci": GITLAB_CI,
    "airflow": AIRFLOW,
}

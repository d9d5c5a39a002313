"""Operations: admin console and actions as staff (refused otherwise), cleanup and housekeeping
commands on real files and rows, metrics after a job."""

from __future__ import annotations

import io
import re
import subprocess
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.accounts.models import ApiKey
from apps.jobs.models import Artifact, Job, JobEvent
from apps.uploads.models import Batch, SourceImage
from tests.conftest import sample, wait_for_jobs
from tests.servers import BIN, ROOT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def finished(alice_api, broker, worker):
    response = alice_api.post(
        "/api/v1/upload/", {"files": [sample("chelsea.png"), sample("coffee.png")]}
    )
    assert response.status_code == 200
    wait_for_jobs(broker, worker)
    return response.json()["batch_id"]


def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def files(media_root) -> set[str]:
    return {p.relative_to(media_root).as_posix() for p in media_root.rglob("*") if p.is_file()}


def age_jobs(batch_id, hours: int) -> None:
    Job.objects.filter(batch_id=batch_id).update(
        finished_at=timezone.now() - timedelta(hours=hours)
    )


# --- admin ---------------------------------------------------------------------------------------


def test_the_console_dashboard_shows_health_disk_queues_jobs_and_circuits(staff, finished):
    page = staff_client(staff).get("/admin/").content.decode()
    assert "System health" in page
    for component in ("database", "redis", "workers", "disk_space", "generators"):
        assert f"<td>{component}</td>" in page
    assert "Uploads" in page and "in 2 files" in page  # the two originals
    assert "generation" in page and "waiting" in page
    assert "Jobs in the last 24 hours: 2" in page and "succeeded 2" in page
    assert "tripo3d: <strong>closed</strong>" in page


def test_non_staff_cannot_reach_the_console(alice):
    client = Client()
    client.force_login(alice)
    for path in ("/admin/", "/admin/console/cleanup/", "/admin/console/logs/", "/admin/jobs/job/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_deleting_a_finished_job_in_the_admin_removes_its_outputs_events_and_row(
    staff, finished, media_root
):
    first, second = Job.objects.filter(batch_id=finished).order_by("created_at")
    outputs = {artifact.file.name for artifact in first.artifacts.all()}
    kept = {artifact.file.name for artifact in second.artifacts.all()}
    originals = {image.file.name for image in SourceImage.objects.filter(batch_id=finished)}
    assert outputs and kept and outputs | kept | originals <= files(media_root)
    client = staff_client(staff)
    form = {"action": "delete_selected", "_selected_action": [str(first.pk)]}
    confirm = client.post("/admin/jobs/job/", form)
    assert confirm.status_code == 200 and "Are you sure" in confirm.content.decode()
    assert Job.objects.filter(pk=first.pk).exists()  # nothing happens before confirmation

    done = client.post("/admin/jobs/job/", {**form, "post": "yes"})
    assert done.status_code == 302
    assert not Job.objects.filter(pk=first.pk).exists()
    assert not JobEvent.objects.filter(job_id=first.pk).exists()
    assert not Artifact.objects.filter(job_id=first.pk).exists()
    left = files(media_root)
    assert not outputs & left  # its stored outputs are gone from disk
    assert kept | originals <= left  # the other job's outputs and the batch's originals stay


def test_a_batch_with_an_unfinished_job_cannot_be_deleted_until_it_ends(
    staff, alice_api, broker, media_root
):
    from apps.jobs.services import job_cancel

    response = alice_api.post("/api/v1/upload/", {"files": [sample("chelsea.png")]})
    batch_id = response.json()["batch_id"]
    job = Job.objects.get(batch_id=batch_id)
    assert job.status == "queued"  # no worker runs in this test
    stored = files(media_root)
    assert stored
    client = staff_client(staff)
    form = {"action": "delete_selected", "_selected_action": [batch_id]}
    explained = client.post("/admin/uploads/batch/", form)
    assert explained.status_code == 200  # the confirmation page names what blocks it
    page = explained.content.decode()
    assert "permission to delete" in page and 'name="post"' not in page  # no confirm button
    form["post"] = "yes"
    assert client.post("/admin/uploads/batch/", form).status_code == 403
    assert Batch.objects.filter(pk=batch_id).exists() and files(media_root) == stored
    assert client.get(f"/admin/jobs/job/{job.pk}/delete/").status_code == 403

    job_cancel(job=job)
    assert Job.objects.get(pk=job.pk).status == "canceled"
    done = client.post("/admin/uploads/batch/", form)
    assert done.status_code == 302
    assert not Batch.objects.filter(pk=batch_id).exists()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert files(media_root) == set()  # the original went with its batch


def test_staff_see_thumbnails_of_every_owner_and_other_users_do_not(staff, bob, finished):
    image = SourceImage.objects.filter(batch_id=finished).first()
    url = f"/images/{image.pk}/"
    assert staff_client(staff).get(url).status_code == 200
    page = staff_client(staff).get(f"/admin/uploads/batch/{finished}/change/").content.decode()
    assert url in page
    assert staff_client(bob).get(url).status_code == 404


def test_job_actions_ask_for_confirmation_first(staff, alice_api, broker):
    response = alice_api.post("/api/v1/upload/", {"files": [sample("chelsea.png")]})
    job = Job.objects.get(batch_id=response.json()["batch_id"])
    client = staff_client(staff)
    form = {"action": "cancel_jobs", "_selected_action": [str(job.pk)]}
    confirm = client.post("/admin/jobs/job/", form)
    assert confirm.status_code == 200 and "Cancel these jobs?" in confirm.content.decode()
    assert Job.objects.get(pk=job.pk).status == "queued"  # nothing happened yet
    done = client.post("/admin/jobs/job/", {**form, "confirm": "yes"}, follow=True)
    assert "Canceled 1 job(s)." in done.content.decode()
    assert Job.objects.get(pk=job.pk).status == "canceled"
    retried = client.post(
        "/admin/jobs/job/", {**form, "action": "retry_jobs", "confirm": "yes"}, follow=True
    )
    assert "Retrying 1 job(s)." in retried.content.decode()
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_deleting_a_jobs_files_keeps_the_record(staff, finished, media_root):
    job = Job.objects.filter(batch_id=finished).first()
    client = staff_client(staff)
    form = {"action": "delete_job_files", "_selected_action": [str(job.pk)], "confirm": "yes"}
    page = client.post("/admin/jobs/job/", form, follow=True).content.decode()
    assert "Deleted 2 file(s)" in page
    assert not any(str(job.pk) in path for path in files(media_root))
    assert Job.objects.filter(pk=job.pk).exists()
    assert all(a.expired_at for a in Artifact.objects.filter(job=job))


def test_pages_of_every_admin_load(staff, finished):
    client = staff_client(staff)
    job = Job.objects.filter(batch_id=finished).first()
    for path in (
        "/admin/jobs/job/",
        f"/admin/jobs/job/{job.pk}/change/",
        "/admin/jobs/artifact/",
        "/admin/jobs/jobevent/",
        "/admin/uploads/batch/",
        f"/admin/uploads/batch/{finished}/change/",
        "/admin/accounts/apikey/",
        "/admin/logs/logrecord/",
        "/admin/logs/dailysummary/",
        "/admin/jobs/job/?status__exact=succeeded&q=chelsea",
        "/admin/console/logs/?hours=48",
    ):
        assert client.get(path).status_code == 200, path


def test_an_api_key_made_in_the_admin_is_shown_once(staff, alice):
    client = staff_client(staff)
    response = client.post(
        "/admin/accounts/apikey/add/",
        {
            "owner": alice.pk,
            "name": "from-admin",
            "scopes": ["read"],
            "rate_limit_per_minute": "",
            "expires_at": "",
        },
    )
    page = response.content.decode()
    secret = re.search(r'<code class="new-secret">(i2m_[^<]+)</code>', page).group(1)
    key = ApiKey.objects.get(name="from-admin")
    assert key.scopes == ["read"] and secret not in str(ApiKey.objects.values().get())
    assert (
        Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
        .get("/api/v1/status/tasks/00000000-0000-0000-0000-000000000000/status")
        .status_code
        == 404
    )
    change = client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert secret not in change
    rotated = client.post(
        "/admin/accounts/apikey/",
        {"action": "rotate_keys", "_selected_action": [str(key.pk)], "confirm": "yes"},
    ).content.decode()
    assert re.search(r'class="new-secret">i2m_', rotated)


def test_clean_up_now_previews_then_deletes(staff, finished, media_root, settings):
    settings.RETENTION_HOURS = 24
    age_jobs(finished, hours=48)
    client = staff_client(staff)
    preview = client.get("/admin/console/cleanup/").content.decode()
    assert re.search(
        r"would free <strong>6</strong> files", preview
    )  # 2 models, 2 previews, 2 originals
    assert len(files(media_root)) == 6
    client.post("/admin/console/cleanup/")
    assert files(media_root) == set()


# --- commands ------------------------------------------------------------------------------------


def test_cleanup_dry_run_changes_nothing_then_cleanup_frees_the_files(finished, media_root):
    age_jobs(finished, hours=48)
    before = files(media_root)
    total = sum((media_root / p).stat().st_size for p in before)
    out = io.StringIO()
    call_command("cleanup", "--older-than", "24h", "--dry-run", stdout=out)
    assert f"Would free 6 files ({total} bytes) of 2 jobs" in out.getvalue()
    assert (
        files(media_root) == before
        and not Artifact.objects.filter(expired_at__isnull=False).exists()
    )
    out = io.StringIO()
    call_command("cleanup", "--older-than", "24h", stdout=out)
    assert f"Freed 6 files ({total} bytes) of 2 jobs" in out.getvalue()
    assert files(media_root) == set()
    assert Artifact.objects.filter(expired_at__isnull=True).count() == 0
    assert SourceImage.objects.filter(expired_at__isnull=True).count() == 0
    out = io.StringIO()
    call_command("cleanup", "--older-than", "24h", stdout=out)
    assert "Freed 0 files" in out.getvalue()


def test_recent_jobs_are_kept(finished, media_root):
    before = files(media_root)
    call_command("cleanup", "--older-than", "24h", stdout=io.StringIO())
    assert files(media_root) == before


def test_two_cleanups_at_once_free_each_file_once(finished, media_root):
    from apps.jobs.services import files_cleanup

    age_jobs(finished, hours=48)
    results = []

    def run():
        results.append(files_cleanup(older_than=timedelta(hours=24), batch_size=1))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result["files"] for result in results) == 6
    assert files(media_root) == set()


def test_housekeeping_runs_everything_once(finished, settings):
    out = io.StringIO()
    call_command("housekeeping", stdout=out)
    assert out.getvalue().startswith("Housekeeping: freed 0 files")


@pytest.mark.parametrize(
    "args",
    [
        ["cleanup", "--older-than", "soon"],
        ["cleanup", "--batch-size", "0"],
        ["rotate_logs", "--keep", "-1"],
        ["housekeeping", "--interval", "0"],
        ["reap_stale_jobs", "--stale-after", "-5"],
        ["analyze_logs", "--hours", "0"],
    ],
)
def test_commands_refuse_bad_arguments_with_a_non_zero_exit(args):
    result = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "error" in result.stderr.lower() or "must" in result.stderr.lower()


# --- metrics -------------------------------------------------------------------------------------


def test_job_metrics_move_after_a_job(alice_api, broker, worker):
    def metric(text: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    succeeded = 'image2model_jobs{generator="relief",status="succeeded"}'
    before = Client().get("/metrics").content.decode()
    response = alice_api.post("/api/v1/upload/", {"files": [sample("coffee.png")]})
    assert response.status_code == 200
    wait_for_jobs(broker, worker)
    after = Client().get("/metrics").content.decode()
    assert metric(after, succeeded) == metric(before, succeeded) + 1
    assert (
        metric(after, "image2model_job_duration_seconds_count")
        == metric(before, "image2model_job_duration_seconds_count") + 1
    )
    assert metric(after, 'image2model_job_outcomes{generator="relief",outcome="succeeded"}') >= 1
    assert (
        metric(after, "image2model_uploaded_files_total")
        >= metric(before, "image2model_uploaded_files_total") + 1
    )
    assert 'image2model_queue_depth{queue="generation"} 0.0' in after
    assert "route=" not in after and "/api/v1/status/tasks/" not in after  # bounded labels only


def test_a_view_only_staff_user_gets_no_actions(django_user_model, alice_key):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(
        "viewer", password="x-long-password", is_staff=True
    )
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client = Client()
    client.force_login(viewer)
    page = client.get("/admin/accounts/apikey/").content.decode()
    assert "rotate_keys" not in page and "revoke_keys" not in page
    key = ApiKey.objects.get()
    response = client.post(
        "/admin/accounts/apikey/",
        {"action": "rotate_keys", "_selected_action": [str(key.pk)], "confirm": "yes"},
    )
    assert "new-secret" not in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_a_bad_file_name_posted_to_a_page_is_400_not_500():
    boundary = "----x"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="../x.png"\r\n'
        f"Content-Type: image/png\r\n\r\nabc\r\n--{boundary}--\r\n"
    ).encode()
    response = Client().generic(
        "POST", "/accounts/login/", body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 400

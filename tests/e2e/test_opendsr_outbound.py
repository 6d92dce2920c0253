"""OpenDSR outbound through the whole product: processors that call back, and one that does not.

Its own embedded broker and stack (orchestrator, connector worker, the intake process): two
fake OpenDSR processors are systems of the register. `callbacks` polls once an hour, so it
can only finish through its processor's signed callback (fake -> intake -> Kafka -> connector
worker); `polling`'s processor sends no callbacks, so it finishes by polling. A forged
callback is refused by the intake (401) and reaches nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import yaml

from connectors.fakes import opendsr
from connectors.vendors.opendsr import subject_request_id
from orchestrator.intake.client import RequestPublisher
from orchestrator.intake.publishers import IssuedKey
from orchestrator.runtime.broker import free_port
from orchestrator.runtime.config import Settings
from orchestrator.runtime.stack import Address, Stack
from orchestrator.status.view import StatusView, read_status
from schemas.events import OutcomeStatus, RequestStatus, RequestStatusChanged, RequestType
from schemas.topics import OPENDSR_CALLBACKS
from tests import factories
from tests.e2e.conftest import read_topic

pytestmark = pytest.mark.broker


@dataclass
class Processors:
    """The stack and the two fake processors it sends requests to."""

    stack: Stack
    callbacks: opendsr.FakeOpenDsr
    polling: opendsr.FakeOpenDsr
    intake: str

    def callback_url(self, system: str) -> str:
        return f"{self.intake}opendsr/callbacks/{system}"

    def final(self, request_id: str, timeout: float = 60) -> RequestStatusChanged:
        def done(view: StatusView) -> bool:
            self.stack.check()
            status = view.get(request_id)
            return status is not None and status.status.is_final

        view = asyncio.run(read_status(self.stack.settings.kafka, until=done, timeout=timeout))
        status = view.get(request_id)
        assert status is not None and status.status.is_final, status
        return status


def _system(name: str, fake: opendsr.FakeOpenDsr, intake: str, poll: float) -> dict[str, object]:
    return {
        "name": name,
        "kind": "other",
        "connector": "opendsr",
        "settings": {
            "base_url": fake.url,
            "token": "${DSR_TEST_OPENDSR_TOKEN}",  # expanded by the worker, not by the intake
            "controller_id": opendsr.CONTROLLER_ID,
            "callback_url": f"{intake}opendsr/callbacks/{name}",
            "poll_seconds": poll,
            "max_poll_seconds": poll,
            "max_wait_seconds": 120,
        },
        "data_categories": ["contact details"],
        "purposes": ["analytics"],
        "legal_basis": ["consent"],
        "profiling": "none",
        "retention": "1 year",
    }


@pytest.fixture(scope="module")
def processors(
    tmp_path_factory: pytest.TempPathFactory, test_publisher: IssuedKey
) -> Iterator[Processors]:
    root = tmp_path_factory.mktemp("opendsr")
    port = free_port()
    intake = f"http://127.0.0.1:{port}/"
    with opendsr.FakeOpenDsr() as calling, opendsr.FakeOpenDsr() as silent:
        calling.complete_after_seconds = silent.complete_after_seconds = 1.0
        silent.send_callbacks = False
        register = root / "register.yaml"
        systems = [
            _system("callbacks", calling, intake, poll=3600),
            _system("polling", silent, intake, poll=0.5),
            {**_system("crm", silent, intake, poll=1), "connector": "memory", "settings": {}},
        ]
        register.write_text(yaml.safe_dump({"systems": systems}))
        settings = Settings(
            register_file=register,
            data_dir=root / "data",
            retry_delay_seconds=0.2,
            tick_interval_seconds=0.5,
            publisher_keys=test_publisher.keys_file,
        )
        env = {"DSR_TEST_OPENDSR_TOKEN": opendsr.TOKEN}
        stack = Stack(
            settings,
            log_dir=root / "logs",
            extra_env=env,
            intake=Address("127.0.0.1", port),
        )
        with stack:
            _until_ready(intake)
            yield Processors(stack, calling, silent, intake)


def _until_ready(intake: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{intake}readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError("the intake process did not become ready")


def _submit(processors: Processors, kind: RequestType, signer: IssuedKey) -> str:
    request = factories.request(
        f"opendsr-{kind.value}-{uuid.uuid4().hex[:8]}", opendsr.SUBJECT_EMAIL, type=kind
    )
    with RequestPublisher(
        processors.stack.settings.kafka, source="tests", signer=signer.signer()
    ) as publisher:
        publisher.publish(request)
    return request.request_id


def test_access_is_answered_by_a_processor_that_calls_back_and_by_one_that_is_polled(
    processors: Processors, test_publisher: IssuedKey
) -> None:
    request_id = _submit(processors, RequestType.ACCESS, test_publisher)
    final = processors.final(request_id)
    assert final.status == RequestStatus.COMPLETED, final.reason
    for name in ("callbacks", "polling"):
        progress = final.systems[name]
        assert progress.status == OutcomeStatus.COMPLETED, progress.reason
        assert progress.counts.found == sum(opendsr.SUBJECT_EXPECTED.values())
    # The hour-long poll never came: the processor's callback, through the intake and Kafka,
    # woke the task. Its callbacks were answered 200 by the intake.
    sent = processors.callbacks.callbacks
    assert {c.request_status for c in sent} >= {"in_progress", "completed"}
    assert all(c.answer == 200 for c in sent)
    assert processors.polling.callbacks == []  # the other one was polled only
    assert len(processors.polling.calls("GET", "/v1/requests/")) >= 2


def test_erasure_deletes_at_both_processors_with_their_signed_statuses_as_evidence(
    processors: Processors, test_publisher: IssuedKey
) -> None:
    request_id = _submit(processors, RequestType.ERASURE, test_publisher)
    final = processors.final(request_id)
    assert final.status == RequestStatus.COMPLETED, final.reason
    for name, fake in (("callbacks", processors.callbacks), ("polling", processors.polling)):
        progress = final.systems[name]
        assert progress.counts.deleted == sum(opendsr.SUBJECT_EXPECTED.values()), progress
        assert opendsr.SUBJECT_EMAIL not in fake.people
        assert fake.request_ids()[-1] == subject_request_id(request_id, name, "erasure")


def test_a_task_waiting_for_its_processor_holds_up_no_other_task(
    processors: Processors, test_publisher: IssuedKey
) -> None:
    fake = processors.callbacks
    fake.auto_complete = False
    try:
        first = _submit(processors, RequestType.ACCESS, test_publisher)
        waiting = subject_request_id(first, "callbacks", "access")
        for _ in range(600):
            if waiting in fake.opendsr:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert fake.opendsr[waiting].status == "pending"  # its task now waits on it
        # A later request's tasks arrive in a later batch: they run while the first waits.
        second = _submit(processors, RequestType.ACCESS, test_publisher)

        def others_done(view: StatusView) -> bool:
            status = view.get(second)
            return status is not None and all(
                status.systems[name].status in (OutcomeStatus.COMPLETED, OutcomeStatus.NOT_FOUND)
                for name in ("crm", "polling")
            )

        kafka = processors.stack.settings.kafka
        view = asyncio.run(read_status(kafka, until=others_done, timeout=60))
        assert others_done(view)
        status = view.get(first)
        assert status is not None and status.systems["callbacks"].status == "dispatched"
        assert fake.opendsr[waiting].status == "pending"
        for request_id in (first, second):
            fake.complete(subject_request_id(request_id, "callbacks", "access"))
    finally:
        fake.auto_complete = True
    assert processors.final(first).status == RequestStatus.COMPLETED
    assert processors.final(second).status == RequestStatus.COMPLETED


def test_a_forged_callback_is_refused_and_changes_nothing(processors: Processors) -> None:
    before = len(read_topic(processors.stack.settings.kafka, OPENDSR_CALLBACKS.name))
    url = processors.callback_url("callbacks")
    request_id = opendsr.new_request_id()
    assert processors.callbacks.forge_callback(url, request_id) == 401
    assert processors.callbacks.forge_callback(url, request_id, unsigned=True) == 401
    unknown = processors.callback_url("nobody")
    assert processors.callbacks.forge_callback(unknown, request_id) == 404
    after = len(read_topic(processors.stack.settings.kafka, OPENDSR_CALLBACKS.name))
    assert after == before
    refused = httpx.post(url, content=b"{}", headers={"X-OpenDSR-Processor-Domain": "127.0.0.1"})
    assert refused.status_code == 401
    assert refused.json()["error"]["field"] == "X-OpenDSR-Signature"

"""Servers that stall or send garbage end one case with evidence; the run goes on and keeps its results."""

from tests.fakes.imap import FakeImapServer, FakeImapSession


class StallsAtLogin(FakeImapSession):
    def cmd_login(self, tag, args):
        self.server.stopping.wait(30)  # never answers
        return False


class GarbageGreeting(FakeImapSession):
    def run(self):
        self.sock.sendall(b"\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n")
        self.readline()


def test_stalling_server_is_a_fail_with_evidence_and_the_run_completes(lemonade, tmp_path):
    with FakeImapServer(StallsAtLogin) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or starttls_offered")
    caps = run.result("capability/store_capabilities")
    assert caps["verdict"] == "fail" and "sent nothing" in caps["message"], caps
    assert any("LOGIN" in e["text"] for e in caps["evidence"]["transcript"])
    # the other check in the same run still produced its own result
    assert run.result("capability/store_starttls_offered")["verdict"] in ("pass", "fail")
    assert run.rc == 1 and (run.dir / "index.html").exists()


def test_garbage_greeting_is_a_fail_naming_the_problem(lemonade, tmp_path):
    with FakeImapServer(GarbageGreeting) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities")
    r = run.result("capability/store_capabilities")
    assert r["verdict"] == "fail" and "greeting" in r["message"], r

# Writes the hand-made fixtures and their signed headers. Run once; the output
# is committed. Secrets are listed in README.md.
import hmac, hashlib, json, os, urllib.parse

def w(path, body, headers):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').write(body)
    stem = path.rsplit('.', 1)[0]
    open(stem + '.headers.txt', 'w').write(''.join(f'{k}: {v}\n' for k, v in headers))

def mac(secret, msg, algo=hashlib.sha256):
    return hmac.new(secret.encode(), msg, algo).hexdigest()

# 1. GitHub form-encoded forced push, signed over the raw form body.
gh = {
  "ref": "refs/heads/main", "before": "1111111111111111111111111111111111111111",
  "after": "2222222222222222222222222222222222222222", "created": False, "deleted": False,
  "forced": True, "base_ref": None, "compare": "https://github.com/acme/shop/compare/111111111111...222222222222",
  "commits": [{"id": "2222222222222222222222222222222222222222", "message": "Rewrite checkout & pay flow",
    "timestamp": "2024-03-01T10:00:00+01:00", "author": {"name": "Ada Lovelace", "email": "ada@acme.test", "username": "ada"}}],
  "head_commit": {"id": "2222222222222222222222222222222222222222", "message": "Rewrite checkout & pay flow",
    "timestamp": "2024-03-01T10:00:00+01:00", "author": {"name": "Ada Lovelace", "email": "ada@acme.test", "username": "ada"}},
  "repository": {"id": 7, "name": "shop", "full_name": "acme/shop", "html_url": "https://github.com/acme/shop",
    "clone_url": "https://github.com/acme/shop.git", "created_at": 1709283600, "pushed_at": 1709283600},
  "pusher": {"name": "ada", "email": "ada@acme.test"}, "sender": {"login": "ada", "id": 9}}
body = ('payload=' + urllib.parse.quote_plus(json.dumps(gh, indent=1))).encode()
w('github/push-forced.form', body, [
  ('Content-Type', 'application/x-www-form-urlencoded'), ('X-GitHub-Event', 'push'),
  ('X-GitHub-Delivery', '5e1b3a00-d7f1-11ee-8a7e-000000000001'), ('X-GitHub-Hook-ID', '4242'),
  ('User-Agent', 'GitHub-Hookshot/abc1234'),
  ('X-Hub-Signature-256', 'sha256=' + mac('gh-secret', body)),
  ('X-Hub-Signature', 'sha1=' + mac('gh-secret', body, hashlib.sha1))])

# 2. GitLab tag push (current docs shape) with Idempotency-Key.
gl = {"object_kind": "tag_push", "event_name": "tag_push",
  "before": "0000000000000000000000000000000000000000", "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
  "ref": "refs/tags/v2.1.0", "ref_protected": True, "checkout_sha": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
  "message": "Release 2.1.0", "user_id": 1, "user_name": "John Smith", "user_username": "jsmith",
  "user_email": "[REDACTED]", "project_id": 1,
  "project": {"id": 1, "name": "Example", "web_url": "https://gitlab.acme.test/platform/example",
    "git_ssh_url": "git@gitlab.acme.test:platform/example.git", "git_http_url": "https://gitlab.acme.test/platform/example.git",
    "namespace": "Platform", "path_with_namespace": "platform/example", "default_branch": "main"},
  "commits": [], "total_commits_count": 0, "push_options": {}}
w('gitlab/tag-push-v2.json', json.dumps(gl, indent=2).encode(), [
  ('Content-Type', 'application/json'), ('X-Gitlab-Event', 'Tag Push Hook'), ('X-Gitlab-Token', 'gl-token'),
  ('X-Gitlab-Event-UUID', '13792a34-cac6-4fda-95a8-c58e00a3954e'),
  ('X-Gitlab-Webhook-UUID', '2e8f7a1c-0000-4000-8000-000000000001'),
  ('Idempotency-Key', 'f5e5f430-f57b-4e6e-9fac-d9128cd7232f'), ('X-Gitlab-Instance', 'https://gitlab.acme.test'),
  ('User-Agent', 'GitLab/17.8.0')])

# 3. Gitea form-encoded push: signed over the decoded JSON, not the form body.
def giteaPush(repo, host, ref, before, after, login):
    c = {"id": after, "message": "Bump version\n", "url": f"{host}/{repo}/commit/{after}",
         "author": {"name": "Bob", "email": "bob@acme.test", "username": login},
         "committer": {"name": "Bob", "email": "bob@acme.test", "username": login},
         "verification": None, "timestamp": "2024-02-02T09:30:00Z", "added": [], "removed": [], "modified": ["VERSION"]}
    return {"ref": ref, "before": before, "after": after, "compare_url": f"{host}/{repo}/compare/{before}...{after}",
      "commits": [c], "total_commits": 3, "head_commit": c,
      "repository": {"id": 3, "name": repo.split('/')[1], "full_name": repo, "html_url": f"{host}/{repo}",
        "clone_url": f"{host}/{repo}.git", "ssh_url": f"git@x:{repo}.git", "default_branch": "main"},
      "pusher": {"id": 2, "login": login, "username": login, "full_name": "Bob", "email": "bob@acme.test"},
      "sender": {"id": 2, "login": login, "username": login}}
gt = json.dumps(giteaPush("ops/api", "https://gitea.acme.test", "refs/heads/release/1.x",
    "3333333333333333333333333333333333333333", "4444444444444444444444444444444444444444", "bob"), indent=2)
sig = mac('gitea-secret', gt.encode())
w('gitea/push.form', ('payload=' + urllib.parse.quote_plus(gt)).encode(), [
  ('Content-Type', 'application/x-www-form-urlencoded'),
  ('X-Gitea-Delivery', 'a1b2c3d4-0000-4000-8000-00000000gt01'), ('X-Gitea-Event', 'push'), ('X-Gitea-Event-Type', 'push'),
  ('X-Gitea-Signature', sig),
  ('X-Gogs-Delivery', 'a1b2c3d4-0000-4000-8000-00000000gt01'), ('X-Gogs-Event', 'push'), ('X-Gogs-Event-Type', 'push'),
  ('X-Gogs-Signature', sig),
  ('X-Hub-Signature', 'sha1=' + mac('gitea-secret', gt.encode(), hashlib.sha1)), ('X-Hub-Signature-256', 'sha256=' + sig),
  ('X-GitHub-Delivery', 'a1b2c3d4-0000-4000-8000-00000000gt01'), ('X-GitHub-Event', 'push'), ('X-GitHub-Event-Type', 'push')])

# 4. Gogs JSON push (no head_commit, no X-Hub-*).
gg = giteaPush("legacy/site", "https://gogs.acme.test", "refs/heads/master",
    "5555555555555555555555555555555555555555", "6666666666666666666666666666666666666666", "carol")
del gg["head_commit"]; del gg["total_commits"]
gg["pusher"] = {"id": 4, "username": "carol", "login": "", "full_name": "Carol", "email": "carol@acme.test"}
body = json.dumps(gg, indent=2).encode()
w('gogs/push.json', body, [
  ('Content-Type', 'application/json'), ('X-Gogs-Delivery', 'gogs-0001'), ('X-Gogs-Event', 'push'),
  ('X-Gogs-Signature', mac('gogs-secret', body)), ('X-Github-Delivery', 'gogs-0001'), ('X-Github-Event', 'push')])

# 5. Forgejo tag push, with every header Forgejo sends.
fj = giteaPush("infra/gw", "https://codeberg.acme.test", "refs/tags/v0.9.0",
    "0000000000000000000000000000000000000000", "7777777777777777777777777777777777777777", "dora")
fj["compare"] = fj["compare_url"]
body = json.dumps(fj, indent=2).encode()
sig = mac('forgejo-secret', body)
w('forgejo/push-tag.json', body, [
  ('Content-Type', 'application/json'),
  ('X-Forgejo-Delivery', 'fj-0001'), ('X-Forgejo-Event', 'push'), ('X-Forgejo-Event-Type', 'push'), ('X-Forgejo-Signature', sig),
  ('X-Gitea-Delivery', 'fj-0001'), ('X-Gitea-Event', 'push'), ('X-Gitea-Event-Type', 'push'), ('X-Gitea-Signature', sig),
  ('X-Gogs-Delivery', 'fj-0001'), ('X-Gogs-Event', 'push'), ('X-Gogs-Event-Type', 'push'), ('X-Gogs-Signature', sig),
  ('X-Hub-Signature', 'sha1=' + mac('forgejo-secret', body, hashlib.sha1)), ('X-Hub-Signature-256', 'sha256=' + sig),
  ('X-GitHub-Delivery', 'fj-0001'), ('X-GitHub-Event', 'push'), ('X-GitHub-Event-Type', 'push')])

# 6. Bitbucket Cloud push with two changes (tag created, branch deleted); unsigned,
# the token comes as ?token=bb-token on the hook URL.
def bbref(t, name, h, msg):
    return {"type": t, "name": name, "target": {"type": "commit", "hash": h, "message": msg,
      "date": "2024-04-05T06:07:08+00:00", "author": {"type": "author", "raw": "Erin Example <erin@acme.test>",
      "user": {"display_name": "Erin Example", "nickname": "erin"}}}}
bb = {"actor": {"display_name": "Erin Example", "nickname": "erin", "type": "user"},
  "repository": {"type": "repository", "full_name": "acme/billing", "name": "billing",
    "links": {"html": {"href": "https://bitbucket.org/acme/billing"}}, "scm": "git", "is_private": True},
  "push": {"changes": [
    {"new": bbref("tag", "v3.0.0", "8888888888888888888888888888888888888888", "Release 3\n"), "old": None,
     "created": True, "closed": False, "forced": False, "truncated": False, "commits": []},
    {"new": None, "old": bbref("branch", "feature/old", "9999999999999999999999999999999999999999", "wip\n"),
     "created": False, "closed": True, "forced": False, "truncated": False, "commits": []}]}}
w('bitbucket-cloud/push-tag-and-delete.json', json.dumps(bb, indent=2).encode(), [
  ('Content-Type', 'application/json'), ('User-Agent', 'Bitbucket-Webhooks/2.0'), ('X-Event-Key', 'repo:push'),
  ('X-Hook-UUID', '{f1f1f1f1-0000-4000-8000-000000000001}'), ('X-Request-UUID', '{r1r1r1r1-0000-4000-8000-000000000002}'),
  ('X-Attempt-Number', '1')])

# 7. Generic build from a Jenkinsfile post step.
gen = {"job": "team/shop/main", "number": 57, "phase": "FINALIZED", "status": "SUCCESS",
  "url": "https://ci.acme.test/job/team/job/shop/job/main/57/", "queue_id": 1201,
  "scm": {"url": "https://github.com/acme/shop.git", "branch": "main", "commit": "2222222222222222222222222222222222222222"},
  "parameters": {"VERSION": "1.4.2", "DEPLOY": "true"}}
w('generic/build.json', json.dumps(gen, indent=2).encode(), [
  ('Content-Type', 'application/json'), ('X-Dockmaster-Token', 'ci-token'), ('User-Agent', 'curl/8.5.0')])

# 8. Jenkins legacy FINISHED (plugin < 1.6) of a job in folders, with parameters.
jk = {"name": "api", "url": "job/platform/job/backend/job/api/",
  "build": {"number": 31, "phase": "FINISHED", "status": "UNSTABLE", "url": "job/platform/job/backend/job/api/31/",
    "scm": {"url": "https://gitea.acme.test/ops/api.git", "branch": "origin/release/1.x", "commit": "4444444444444444444444444444444444444444"},
    "parameters": {"VERSION": "1.0.7", "SKIP_TESTS": "false"}}}
w('jenkins/finished-legacy-folder.json', json.dumps(jk, separators=(',', ':')).encode(), [
  ('Content-Type', 'application/json;charset=UTF-8'), ('Authorization', 'Basic amVua2luczpqay10b2tlbg==')])

# 9. Registry envelope (distribution v3): a layer push, a pull and an OCI manifest push.
ev = lambda i, action, mt, tag=None: {"id": i, "timestamp": "2024-05-06T07:08:09.123Z", "action": action,
  "target": dict({"mediaType": mt, "digest": "sha256:" + i[-1] * 64, "size": 1234, "repository": "acme/shop",
   "url": "http://registry.acme.test:5000/v2/acme/shop/manifests/sha256:" + i[-1] * 64}, **({"tag": tag} if tag else {})),
  "request": {"id": "req-" + i, "addr": "10.0.0.5:40000", "host": "registry.acme.test:5000", "method": "PUT", "useragent": "docker/24"},
  "actor": {"name": "ci"}, "source": {"addr": "reg-1:5000", "instanceID": "inst-1"}}
reg = {"events": [ev("evt-a", "push", "application/vnd.oci.image.layer.v1.tar+gzip"),
  ev("evt-b", "pull", "application/vnd.oci.image.manifest.v1+json", "1.4.1"),
  ev("evt-c", "push", "application/vnd.oci.image.manifest.v1+json", "1.4.2")]}
w('registry/mixed.json', json.dumps(reg, indent=2).encode(), [
  ('Content-Type', 'application/vnd.docker.distribution.events.v2+json'), ('Authorization', 'Bearer reg-token')])

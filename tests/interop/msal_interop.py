"""The other side of tokenbridge's MSAL cache interoperability test (tests/it/interop.rs).

  read CACHE_FILE CLIENT_ID AUTHORITY SCOPE   load a cache tokenbridge wrote; print what MSAL finds
  write CLIENT_ID AUTHORITY UID UTID NOW      print a cache MSAL Python itself wrote, with a
                                              token for Graph and one for a second API

MSAL never reaches a network here: its HTTP client is a stub that answers OpenID discovery for
the authority from memory and fails on anything else, so a silent acquisition can only succeed
from the cache.
"""
import base64
import json
import sys
import warnings

import msal
from msal.token_cache import TokenCache


class Response:
    def __init__(self, status_code, body):
        self.status_code = status_code
        self.text = json.dumps(body)
        self.headers = {}

    def raise_for_status(self):
        if self.status_code >= 400:
            raise RuntimeError("HTTP %d" % self.status_code)


class OfflineHttp:
    def __init__(self, authority):
        self.authority = authority.rstrip("/")

    def get(self, url, **kwargs):
        if url.startswith(self.authority) and url.endswith("/.well-known/openid-configuration"):
            return Response(200, {
                "issuer": self.authority + "/v2.0",
                "authorization_endpoint": self.authority + "/oauth2/v2.0/authorize",
                "token_endpoint": self.authority + "/oauth2/v2.0/token",
            })
        raise RuntimeError("no network in this test: GET " + url)

    def post(self, url, **kwargs):
        raise RuntimeError("no network in this test: POST " + url)

    def close(self):
        pass


SECOND_API_SCOPE = "api://tokenbridge-tasks/Tasks.Read"


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def read(cache_file, client_id, authority, scope):
    cache = msal.SerializableTokenCache()
    with open(cache_file) as f:
        cache.deserialize(f.read())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ats = cache.find(TokenCache.CredentialType.ACCESS_TOKEN, target=[scope],
                         query={"client_id": client_id})
        rts = cache.find(TokenCache.CredentialType.REFRESH_TOKEN, query={"client_id": client_id})
    app = msal.ConfidentialClientApplication(
        client_id, client_credential="unused", authority=authority, token_cache=cache,
        http_client=OfflineHttp(authority), instance_discovery=False)
    accounts = app.get_accounts()
    silent = app.acquire_token_silent([scope], account=accounts[0]) if accounts else None
    print(json.dumps({
        "access_tokens": [at["secret"] for at in ats],
        "refresh_tokens": [rt["secret"] for rt in rts],
        "accounts": [{"home_account_id": a["home_account_id"], "username": a["username"],
                      "local_account_id": a["local_account_id"]} for a in accounts],
        "silent": (silent or {}).get("access_token"),
        "silent_source": (silent or {}).get("token_source"),
    }))


def write(client_id, authority, uid, utid, now):
    now = int(now)
    host = authority.split("/")[2]
    id_token = ".".join([
        b64({"alg": "none", "typ": "JWT"}),
        b64({"iss": authority + "/v2.0", "aud": client_id, "sub": "sub-" + uid, "oid": uid,
             "tid": utid, "preferred_username": "python@contoso.com", "name": "Py Thon",
             "iat": now, "nbf": now, "exp": now + 3600}),
        "",
    ])
    cache = msal.SerializableTokenCache()
    cache.add({
        "client_id": client_id,
        "scope": ["User.Read", "openid", "profile", "offline_access"],
        "token_endpoint": authority + "/oauth2/v2.0/token",
        "environment": host,
        "grant_type": "authorization_code",
        "response": {
            "token_type": "Bearer",
            "access_token": "python-access-token",
            "refresh_token": "python-refresh-token",
            "id_token": id_token,
            "expires_in": 3600,
            "client_info": b64({"uid": uid, "utid": utid}),
        },
    }, now=now)
    # A minute later, the same account's refresh token redeemed for a second API's scope, as
    # MSAL does: MSAL Python keeps that refresh token in an entry of its own (keyed by scope).
    cache.add({
        "client_id": client_id,
        "scope": [SECOND_API_SCOPE],
        "token_endpoint": authority + "/oauth2/v2.0/token",
        "environment": host,
        "grant_type": "refresh_token",
        "response": {
            "token_type": "Bearer",
            "access_token": "python-second-api-token",
            "refresh_token": "python-refresh-token-2",
            "expires_in": 3600,
            "scope": SECOND_API_SCOPE,
            "client_info": b64({"uid": uid, "utid": utid}),
        },
    }, now=now + 60)
    print(cache.serialize())


def rewrite(cache_file, client_id, authority, now):
    """MSAL writes back a cache it read, after a refresh for its account: what it keeps."""
    now = int(now)
    cache = msal.SerializableTokenCache()
    with open(cache_file) as f:
        cache.deserialize(f.read())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        account = cache.find(TokenCache.CredentialType.ACCOUNT)[0]
    uid, utid = account["home_account_id"].split(".")
    cache.add({
        "client_id": client_id,
        "scope": ["User.Read"],
        "token_endpoint": authority + "/oauth2/v2.0/token",
        "environment": authority.split("/")[2],
        "grant_type": "refresh_token",
        "response": {
            "token_type": "Bearer",
            "access_token": "python-rewritten-token",
            "refresh_token": "python-rewritten-refresh-token",
            "expires_in": 7200,
            "scope": "User.Read",
            "client_info": b64({"uid": uid, "utid": utid}),
        },
    }, now=now)
    print(cache.serialize())


if __name__ == "__main__":
    {"read": read, "write": write, "rewrite": rewrite}[sys.argv[1]](*sys.argv[2:])

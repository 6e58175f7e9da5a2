//! LDAP logins against a real OpenLDAP `slapd`, started by the test with a
//! tree of its own: directory groups mapped onto the access rules, a
//! disabled account refused, the search and the bind-as-user modes, and the
//! directory going down (remembered logins keep working, new ones get 503).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use common::slapd::{Person, Slapd, BASE};
use common::{Client, Server};

fn people() -> Vec<Person<'static>> {
    vec![
        Person {
            uid: "alice",
            password: "alice-pw",
            groups: &["devs"],
            disabled: false,
        },
        Person {
            uid: "bob",
            password: "bob-pw",
            groups: &["ops"],
            disabled: false,
        },
        Person {
            uid: "carol",
            password: "carol-pw",
            groups: &["devs"],
            disabled: true,
        },
        Person {
            uid: "dave",
            password: "dave-pw",
            groups: &["devs", "ops"],
            disabled: false,
        },
        Person {
            uid: "erin",
            password: "erin-pw",
            groups: &[],
            disabled: false,
        },
    ]
}

const RULES: &str = r#"
[[auth.rules]]
repos = "team/*"
groups = ["devs"]
actions = ["pull", "push"]
[[auth.rules]]
repos = "team/*"
groups = ["ops"]
actions = ["pull"]
"#;

/// Each request from a loopback address of its own, so that the failures
/// this test makes on purpose do not throttle the address.
fn as_user(s: &Server, user: &str, pw: &str, method: &str, path: &str) -> common::Resp {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let src = format!("127.0.{}.{}", n / 250, n % 250 + 2);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    );
    common::request_from(&src, s.port, method, path, &[("Authorization", &auth)], b"")
}

fn push_status(s: &Server, user: &str, pw: &str, repo: &str) -> u16 {
    as_user(s, user, pw, "POST", &format!("/v2/{repo}/blobs/uploads/")).status
}

fn pull_status(s: &Server, user: &str, pw: &str, repo: &str) -> u16 {
    as_user(s, user, pw, "GET", &format!("/v2/{repo}/tags/list")).status
}

#[test]
fn directory_groups_grant_and_deny_and_disabled_accounts_are_refused() {
    let Some(ldap) = Slapd::start(&people()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("bind.pw");
    std::fs::write(&pwfile, format!("{}\n", common::slapd::ADMIN_PW)).unwrap();
    // search mode: a service account finds the user, memberOf names groups
    let s = Server::start_with_config(&format!(
        r#"
[auth]
[auth.ldap]
url = "{url}"
bind_dn = "{admin}"
bind_password_file = "{pw}"
base = "ou=people,{BASE}"
filter = "(&(uid={{username}})(!(employeeType=disabled)))"
group_attribute = "memberOf"
{RULES}"#,
        url = ldap.url(),
        admin = common::slapd::ADMIN_DN,
        pw = pwfile.display(),
    ));
    let admin = Client::new(&s).with_basic("alice", "alice-pw");
    admin.push_image("team/app", "v1", b"layer");
    assert_eq!(
        push_status(&s, "alice", "alice-pw", "team/app"),
        202,
        "devs push"
    );
    assert_eq!(
        pull_status(&s, "bob", "bob-pw", "team/app"),
        200,
        "ops pull"
    );
    assert_eq!(
        push_status(&s, "bob", "bob-pw", "team/app"),
        403,
        "ops may not push"
    );
    assert_eq!(
        push_status(&s, "dave", "dave-pw", "team/app"),
        202,
        "in both groups"
    );
    assert_eq!(
        pull_status(&s, "erin", "erin-pw", "team/app"),
        403,
        "in no group"
    );
    // erin has the default access where no rule matches
    assert_eq!(push_status(&s, "erin", "erin-pw", "misc/x"), 202);
    assert_eq!(
        pull_status(&s, "carol", "carol-pw", "team/app"),
        401,
        "disabled account"
    );
    assert_eq!(pull_status(&s, "alice", "wrong", "team/app"), 401);
    assert_eq!(pull_status(&s, "nobody", "x", "team/app"), 401);
    assert_eq!(
        pull_status(&s, "alice", "", "team/app"),
        401,
        "empty password"
    );
    // a filter injection stays a literal name
    assert_eq!(pull_status(&s, "*", "alice-pw", "team/app"), 401);
    assert_eq!(pull_status(&s, "alice)(uid=*", "alice-pw", "team/app"), 401);
    let c = Client::new(&s);
    assert!(
        common::metric(
            &c,
            "berth_auth_events_total{event=\"login\",method=\"ldap\"}"
        ) >= 4.0
    );
    assert!(
        common::metric(
            &c,
            "berth_auth_events_total{event=\"login_failed\",method=\"ldap\"}"
        ) >= 4.0
    );

    // the directory goes down: remembered logins go on, others are 503
    ldap.stop();
    assert_eq!(
        pull_status(&s, "bob", "bob-pw", "team/app"),
        200,
        "remembered"
    );
    let r = as_user(&s, "erin", "wrong", "GET", "/v2/team/app/tags/list");
    assert_eq!(
        r.status,
        503,
        "unknown while the directory is down: {}",
        r.text()
    );
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("Retry-After").is_some());
    ldap.start_again();
    assert_eq!(pull_status(&s, "erin", "wrong", "team/app"), 401, "back up");
}

#[test]
fn bind_as_the_user_with_a_group_search() {
    let Some(ldap) = Slapd::start(&people()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("bind.pw");
    std::fs::write(&pwfile, common::slapd::ADMIN_PW).unwrap();
    let s = Server::start_with_config(&format!(
        r#"
[auth]
admins = ["dave"]
[auth.ldap]
url = "{url}"
user_dn = "uid={{username}},ou=people,{BASE}"
filter = "(!(employeeType=disabled))"
group_base = "ou=groups,{BASE}"
group_filter = "(&(objectClass=groupOfNames)(member={{dn}}))"
bind_dn = "{admin}"
bind_password_file = "{pw}"
{RULES}"#,
        url = ldap.url(),
        admin = common::slapd::ADMIN_DN,
        pw = pwfile.display(),
    ));
    assert_eq!(push_status(&s, "alice", "alice-pw", "team/app"), 202);
    assert_eq!(push_status(&s, "bob", "bob-pw", "team/app"), 403);
    assert_eq!(
        pull_status(&s, "bob", "bob-pw", "team/app"),
        404,
        "may pull; nothing there"
    );
    assert_eq!(
        pull_status(&s, "carol", "carol-pw", "team/app"),
        401,
        "disabled"
    );
    assert_eq!(pull_status(&s, "alice", "bob-pw", "team/app"), 401);
    // a directory user named in admins is an admin
    let gc = |u: &str, p: &str| as_user(&s, u, p, "POST", "/_berth/gc?dry_run=true").status;
    assert_eq!(gc("dave", "dave-pw"), 200);
    assert_eq!(gc("alice", "alice-pw"), 403);
}

/// The directory over TLS: ldaps:// and StartTLS, the server's certificate
/// checked against `ca_file`; a directory whose certificate the CA did not
/// issue is unavailable (503), never a login.
#[test]
fn ldaps_and_starttls_check_the_directory_certificate() {
    let certs = tempfile::tempdir().unwrap();
    common::make_ca_and_server_cert(certs.path());
    let Some(ldap) = Slapd::start_with(&people(), Some(certs.path())) else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    common::make_ca_and_server_cert(other.path());
    let server = |url: &str, starttls: bool, ca: &std::path::Path| {
        Server::start_with_config(&format!(
            r#"
[auth]
[auth.ldap]
url = "{url}"
user_dn = "uid={{username}},ou=people,{BASE}"
starttls = {starttls}
group_attribute = "memberOf"
ca_file = "{}"
{RULES}"#,
            ca.join("ca.pem").display()
        ))
    };
    let ldaps = server(&ldap.tls_url(), false, certs.path());
    assert_eq!(
        push_status(&ldaps, "alice", "alice-pw", "team/app"),
        202,
        "ldaps"
    );
    assert_eq!(pull_status(&ldaps, "alice", "wrong", "team/app"), 401);
    let starttls = server(&ldap.url(), true, certs.path());
    assert_eq!(
        push_status(&starttls, "alice", "alice-pw", "team/app"),
        202,
        "StartTLS"
    );
    let untrusted = server(&ldap.tls_url(), false, other.path());
    assert_eq!(
        pull_status(&untrusted, "alice", "alice-pw", "team/app"),
        503,
        "certificate not trusted"
    );
}

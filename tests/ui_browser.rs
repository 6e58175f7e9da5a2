//! The web pages in a real browser: Debian's chromium through chromedriver
//! (WebDriver, the fantoccini client), against a server holding a
//! multi-arch index, a single-platform image, a signature referrer, and two
//! users who may see different repositories. `.ci/run` installs chromium
//! and chromium-driver and sets BERTH_REQUIRE_CLIENTS=1.

mod common;

use std::process::{Child, Command, Stdio};

use common::{bytes, sha256, Client, Server};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::{json, Value};

const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

struct Driver {
    port: u16,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    if !common::clients::available("chromedriver") || !common::clients::available("chromium") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    common::wait_for_port(port, "chromedriver");
    Some(Driver { port, child })
}

async fn browser(d: &Driver) -> Browser {
    browser_with(d, json!({})).await
}

/// A 1280x1000 browser, with `more` chromeOptions (mobileEmulation: a
/// phone's viewport; headless windows are at least 500 pixels wide).
async fn browser_with(d: &Driver, more: Value) -> Browser {
    let mut caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        },
        "goog:loggingPrefs": {"browser": "ALL"}
    });
    for (k, v) in more.as_object().unwrap() {
        caps["goog:chromeOptions"][k] = v.clone();
    }
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a browser session")
}

/// An image for `arch` (config with entrypoint, env, labels, history, one layer).
fn push_platform(c: &Client, repo: &str, tag: &str, arch: &str, seed: u64) -> String {
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "created": "2026-12-01T10:00:00Z",
        "config": {"Entrypoint": ["/bin/app"], "Env": ["MODE=edge"], "Labels": {"org.opencontainers.image.title": "app"}},
        "history": [{"created_by": "COPY app /bin/app"}],
        "rootfs": {"type": "layers", "diff_ids": []}}))
    .unwrap();
    let layer = bytes(seed, 3000 + seed as usize);
    let cd = c.push_blob(repo, &config);
    let ld = c.push_blob(repo, &layer);
    let m = common::image_manifest(&cd, config.len(), &[(&ld, layer.len())]);
    let r = c.put_manifest(repo, tag, common::OCI_MANIFEST, &m);
    assert_eq!(r.status, 201, "{}", r.text());
    r.header("Berth-Tag-Digest")
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn push_signature(
    c: &Client,
    repo: &str,
    subject: &str,
    subject_type: &str,
    subject_size: usize,
) -> String {
    let empty = b"{}";
    let ed = c.push_blob(repo, empty);
    let sig = c.push_blob(repo, b"signature bytes");
    let m = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": common::OCI_MANIFEST, "artifactType": SIG,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": ed, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 15}],
        "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size}}),
    )
    .unwrap();
    let d = sha256(&m);
    let r = c.put_manifest(repo, &d, common::OCI_MANIFEST, &m);
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap().trim().to_string());
    }
    out
}

/// Every resource the page loaded, and every URL it names, is this server's.
async fn only_local(b: &Browser, origin: &str) {
    let loaded = b
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)
               .concat([...document.querySelectorAll('[src],[href]')].map(e => e.src || e.href))",
            vec![],
        )
        .await
        .unwrap();
    for url in loaded.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(origin) || url.starts_with("data:"),
            "the page reaches out: {url}"
        );
    }
}

/// No console message of level SEVERE (errors, CSP violations, failed loads).
async fn no_console_errors(b: &Browser, driver: &Driver) {
    let id = b.session_id().await.unwrap().unwrap();
    let url = format!("http://127.0.0.1:{}/session/{id}/se/log", driver.port);
    let body = ureq::post(&url)
        .send_string(r#"{"type":"browser"}"#)
        .unwrap()
        .into_string()
        .unwrap();
    let logs: Value = serde_json::from_str(&body).unwrap();
    let severe: Vec<&Value> = logs["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
}

/// Log in with the page's form.
async fn log_in(b: &Browser, origin: &str, user: &str, password: &str) {
    b.goto(&format!("{origin}/ui/login")).await.unwrap();
    b.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    b.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    b.find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // the answer: the list (logged in) or the form with why
    b.wait()
        .for_element(Locator::Css("header .who .user, .error"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn pages_show_the_platform_matrix_images_and_referrers_to_who_may_see_them() {
    let Some(driver) = chromedriver() else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = common::htpasswd_file(dir.path(), &["alice", "bob"]);
    let s = Server::start_with_config(&format!(
        r#"
[auth]
htpasswd = "{}"
admins = ["alice"]
[[auth.rules]]
repos = "team/*"
users = ["alice"]
actions = ["pull", "push"]
[[auth.rules]]
repos = "other/*"
users = ["bob"]
actions = ["pull", "push"]
"#,
        users.display()
    ));
    let alice = Client::new(&s).with_basic("alice", "alice-pw");
    push_platform(&alice, "team/app", "v1", "amd64", 1);
    let index = push_platform(&alice, "team/app", "v1", "arm64", 2);
    let single = push_platform(&alice, "team/single", "v1", "ppc64le", 3);
    let r = alice.get("/v2/team/app/manifests/v1");
    let sig = push_signature(&alice, "team/app", &index, common::OCI_INDEX, r.body.len());
    push_platform(
        &Client::new(&s).with_basic("bob", "bob-pw"),
        "other/thing",
        "v1",
        "s390x",
        4,
    );
    let origin = format!("http://127.0.0.1:{}", s.port);

    let b = browser(&driver).await;
    // a browser asking for / lands on the pages
    b.goto(&format!("{origin}/")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/");
    // logging in with the form, then back to the list
    log_in(&b, &origin, "alice", "wrong").await;
    assert_eq!(
        texts(&b, ".error").await,
        vec!["Wrong user name or password."]
    );
    log_in(&b, &origin, "alice", "alice-pw").await;
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/");
    assert_eq!(
        texts(&b, "#repos tbody tr[data-name] td:first-child a").await,
        vec!["team/app", "team/single"]
    );
    assert_eq!(texts(&b, "header .who .user").await, vec!["alice"]);
    only_local(&b, &origin).await;

    // the repository: exactly the pushed platforms, as a matrix
    b.goto(&format!("{origin}/ui/repo/team/app")).await.unwrap();
    assert_eq!(
        texts(&b, "#matrix thead th").await,
        vec!["Tag", "linux/amd64", "linux/arm64"]
    );
    assert_eq!(texts(&b, "#matrix tbody td .yes").await.len(), 2);
    assert!(texts(&b, "#tags tbody td")
        .await
        .iter()
        .any(|t| t.starts_with(&index[..19])));
    only_local(&b, &origin).await;

    // the index's page: its children, the signature, pull commands per platform
    b.goto(&format!("{origin}/ui/image/team/app@{index}"))
        .await
        .unwrap();
    assert_eq!(
        texts(&b, "#children tbody td:first-child").await,
        vec!["linux/amd64", "linux/arm64"]
    );
    let referrers = texts(&b, "#referrers tbody td").await;
    assert_eq!(referrers[0], SIG, "{referrers:?}");
    assert!(referrers[1].starts_with(&sig[..19]));
    let pulls = texts(&b, ".pull code").await;
    assert!(
        pulls.iter().any(|p| p.contains("--platform linux/arm64")
            && p.starts_with("ctr images pull --plain-http")),
        "{pulls:?}"
    );
    // a child: its config and layers
    b.find(Locator::Css("#children tbody tr:first-child a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait().for_element(Locator::Id("layers")).await.unwrap();
    let layers = texts(&b, "#layers tbody td:nth-child(4)").await;
    assert_eq!(layers, vec!["2.9 KiB"]);
    let facts = texts(&b, ".facts dd").await.join(" ");
    assert!(
        facts.contains("/bin/app") && facts.contains("MODE=edge") && facts.contains("linux/amd64"),
        "{facts}"
    );
    only_local(&b, &origin).await;

    // across repositories: which images exist for each platform
    b.goto(&format!("{origin}/ui/platforms")).await.unwrap();
    assert_eq!(
        texts(&b, "#matrix thead th").await,
        vec!["Image", "linux/amd64", "linux/arm64", "linux/ppc64le"]
    );
    b.goto(&format!("{origin}/ui/image/team/single@{single}"))
        .await
        .unwrap();
    assert!(texts(&b, ".facts dd")
        .await
        .iter()
        .any(|t| t == "linux/ppc64le"));
    b.goto(&format!("{origin}/ui/admin")).await.unwrap();
    assert_eq!(texts(&b, "#figures dd").await[0], "3");
    // the live filter narrows the list as one types
    b.goto(&format!("{origin}/ui/")).await.unwrap();
    b.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("sing")
        .await
        .unwrap();
    let shown = b.execute("return [...document.querySelectorAll('#repos tbody tr')].filter(r => !r.hidden).map(r => r.dataset.name)", vec![]).await.unwrap();
    assert_eq!(shown, json!(["team/single"]));
    if let Ok(path) = std::env::var("BERTH_UI_SCREENSHOT") {
        b.goto(&format!("{origin}/ui/image/team/app@{index}"))
            .await
            .unwrap();
        std::fs::write(path, b.screenshot().await.unwrap()).unwrap();
    }
    no_console_errors(&b, &driver).await;
    b.close().await.unwrap();

    // bob sees his repository only, and not alice's pages by URL either
    let b = browser(&driver).await;
    log_in(&b, &origin, "bob", "bob-pw").await;
    assert_eq!(
        texts(&b, "#repos tbody tr[data-name] td:first-child a").await,
        vec!["other/thing"]
    );
    for page in [
        "/ui/repo/team/app".to_string(),
        format!("/ui/image/team/app@{index}"),
        "/ui/admin".to_string(),
    ] {
        b.goto(&format!("{origin}{page}")).await.unwrap();
        let h1 = texts(&b, "h1").await;
        assert!(h1 == vec!["404"] || h1 == vec!["403"], "{page}: {h1:?}");
        let body = b.source().await.unwrap();
        assert!(
            !body.contains("linux/arm64") && !body.contains(&index[7..19]),
            "{page} shows alice's content"
        );
    }
    b.goto(&format!("{origin}/ui/platforms")).await.unwrap();
    assert_eq!(
        texts(&b, "#matrix thead th").await,
        vec!["Image", "linux/s390x"]
    );
    // logging out ends the session
    b.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css("header .who a"))
        .await
        .unwrap();
    assert!(texts(&b, "#repos tbody tr[data-name] td:first-child a")
        .await
        .is_empty());
    b.close().await.unwrap();

    // anonymous: nothing, and a way to log in
    let b = browser(&driver).await;
    b.goto(&format!("{origin}/ui/")).await.unwrap();
    assert!(texts(&b, "#repos tbody tr[data-name] td:first-child a")
        .await
        .is_empty());
    assert_eq!(texts(&b, "header .who a").await, vec!["Log in"]);
    no_console_errors(&b, &driver).await;
    b.close().await.unwrap();
}

/// Press `key` once, as a keyboard does (to whatever has the focus).
async fn press(b: &Browser, key: Key) {
    let k = char::from(key);
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: k })
        .then(KeyAction::Up { value: k });
    b.perform_actions(keys).await.unwrap();
}

/// Press Tab until the focused element matches `css` (at most 40 times);
/// false if it never does.
async fn tab_to(b: &Browser, css: &str) -> bool {
    for _ in 0..40 {
        press(b, Key::Tab).await;
        let hit = b
            .execute(
                "return document.activeElement.matches(arguments[0])",
                vec![json!(css)],
            )
            .await
            .unwrap();
        if hit == json!(true) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "current_thread")]
async fn pages_fit_a_phone_and_work_from_the_keyboard() {
    let Some(driver) = chromedriver() else { return };
    let s = Server::start();
    let c = Client::new(&s);
    push_platform(&c, "team/app", "v1", "amd64", 1);
    let index = push_platform(&c, "team/app", "v1", "arm64", 2);
    push_platform(&c, "team/other", "v1", "riscv64", 3);
    let origin = format!("http://127.0.0.1:{}", s.port);

    // a phone: no page scrolls sideways (wide tables scroll in place)
    let phone = json!({"deviceMetrics": {"width": 360, "height": 780, "pixelRatio": 3.0, "touch": true, "mobile": true}});
    let b = browser_with(&driver, json!({ "mobileEmulation": phone })).await;
    for page in [
        "/ui/".to_string(),
        "/ui/repo/team/app".to_string(),
        format!("/ui/image/team/app@{index}"),
        "/ui/platforms".to_string(),
        "/ui/admin".to_string(),
    ] {
        b.goto(&format!("{origin}{page}")).await.unwrap();
        // (the phone zooms out to what is laid out wider than it)
        let w = b
            .execute("return document.documentElement.scrollWidth", vec![])
            .await
            .unwrap();
        assert!(w.as_u64() <= Some(360), "{page} is {w} pixels wide");
    }
    b.close().await.unwrap();

    // the keyboard alone: to the search box, type, to the repository,
    // Enter opens it; its copy buttons take the focus, visibly
    let b = browser(&driver).await;
    b.goto(&format!("{origin}/ui/")).await.unwrap();
    assert!(tab_to(&b, "#q").await, "the search box takes no focus");
    b.active_element()
        .await
        .unwrap()
        .send_keys("app")
        .await
        .unwrap();
    assert!(
        tab_to(&b, "#repos tr:not([hidden]) a").await,
        "no repository link takes the focus"
    );
    assert_eq!(
        b.active_element().await.unwrap().text().await.unwrap(),
        "team/app"
    );
    press(&b, Key::Enter).await;
    b.wait().for_element(Locator::Id("matrix")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/ui/repo/team/app");
    assert!(
        tab_to(&b, "button.copy").await,
        "no copy button takes the focus"
    );
    let outline = b
        .execute(
            "return getComputedStyle(document.activeElement).outlineStyle",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(outline, json!("none"), "the focus is not visible");
    no_console_errors(&b, &driver).await;
    b.close().await.unwrap();
}

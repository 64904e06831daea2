use super::*;

fn with_app(app: AppConfig) -> ProvisionerConfig {
    ProvisionerConfig {
        apps: vec![app],
        ..ProvisionerConfig::default()
    }
}

fn app() -> AppConfig {
    AppConfig::new(
        "zendesk",
        "https://zendesk.example/scim/v2",
        Secret::inline("t0ken"),
    )
}

#[test]
fn the_share_floor_defaults_to_50_or_one_deactivation() {
    let guarded = |share| AppConfig {
        guard_max_share: Some(share),
        ..app()
    };
    assert_eq!(guarded(0.05).guard_min_accounts(), 50);
    assert_eq!(guarded(0.01).guard_min_accounts(), 100);
    let guard = guarded(0.05).guard().expect("a guard");
    assert_eq!(guard.min_accounts, 50);
    assert_eq!(guard.immediate_allowance, 3);
    assert_eq!(guard.max_count, u32::MAX);
    // The defaults pass validation at any share.
    for share in [1.0, 0.5, 0.05, 0.013, 0.001] {
        with_app(guarded(share)).validate().expect("valid");
    }
    let explicit = AppConfig {
        guard_min_accounts: Some(20),
        ..guarded(0.05)
    };
    assert_eq!(explicit.guard().expect("a guard").min_accounts, 20);
    with_app(explicit).validate().expect("valid");
}

#[test]
fn a_share_floor_below_one_deactivation_is_refused_naming_the_key() {
    let config = with_app(AppConfig {
        guard_max_share: Some(0.05),
        guard_min_accounts: Some(10),
        ..app()
    });
    let error = config.validate().expect_err("refused").to_string();
    assert!(
        error.starts_with("provisioner.apps[zendesk].guard_min_accounts = 10 is too small"),
        "{error}"
    );
    assert!(error.contains("at least 20"), "{error}");
    let zero = with_app(AppConfig {
        guard_max_share: Some(0.05),
        guard_min_accounts: Some(0),
        ..app()
    });
    assert_eq!(
        zero.validate().expect_err("refused").to_string(),
        "provisioner.apps[zendesk].guard_min_accounts must be at least 1"
    );
}

#[test]
fn a_share_of_nothing_and_an_empty_window_are_refused() {
    for share in [0.0, -0.1, 1.5, f64::NAN] {
        let error = with_app(AppConfig {
            guard_max_share: Some(share),
            ..app()
        })
        .validate()
        .expect_err("refused")
        .to_string();
        assert!(
            error.starts_with("provisioner.apps[zendesk].guard_max_share must be above 0"),
            "{share}: {error}"
        );
    }
    let error = with_app(AppConfig {
        guard_max_deactivations: Some(5),
        guard_window_secs: 0,
        ..app()
    })
    .validate()
    .expect_err("refused")
    .to_string();
    assert_eq!(
        error,
        "provisioner.apps[zendesk].guard_window_secs must be at least 1"
    );
}

#[test]
fn the_match_chain_defaults_to_user_name() {
    assert_eq!(app().match_chain().expect("chain").to_string(), "userName");
    let parsed: AppConfig = serde_json::from_value(serde_json::json!({
        "name": "zendesk",
        "base_url": "https://zendesk.example/scim/v2",
        "token": "t0ken",
        "match_attributes": ["userName", "emails[type eq \"work\"].value", "externalId"],
        "match_scan_limit": 500,
    }))
    .expect("parses");
    assert_eq!(
        parsed.match_chain().expect("chain").to_string(),
        r#"userName, emails[type eq "work"].value, externalId"#
    );
    assert_eq!(parsed.match_scan_limit, 500);
    with_app(parsed).validate().expect("valid");
}

#[test]
fn a_bad_match_chain_is_refused_naming_the_key() {
    let bad = with_app(AppConfig {
        match_attributes: Some(vec!["userName".into(), "emails[type eq work]".into()]),
        ..app()
    });
    let error = bad.validate().expect_err("refused").to_string();
    assert!(
        error.starts_with("provisioner.apps[zendesk].match_attributes[1]: "),
        "{error}"
    );
    assert!(error.contains("quoted string"), "{error}");
    let empty = with_app(AppConfig {
        match_attributes: Some(Vec::new()),
        ..app()
    });
    assert!(empty
        .validate()
        .expect_err("refused")
        .to_string()
        .starts_with("provisioner.apps[zendesk].match_attributes[0]: "));
    let id = with_app(AppConfig {
        match_attributes: Some(vec!["id".into()]),
        ..app()
    });
    assert!(id
        .validate()
        .expect_err("refused")
        .to_string()
        .starts_with("provisioner.apps[zendesk].match_attributes[0]: "));
}

/// One app as `[[provisioner.apps]]` would give it, plus `extra` lines.
fn parsed(extra: &str) -> AppConfig {
    let toml = format!(
        "[[apps]]\nname = \"zendesk\"\nbase_url = \"https://zendesk.example/scim/v2\"\ntoken = \"t0ken\"\n{extra}"
    );
    let config: ProvisionerConfig = toml::from_str(&toml).expect("parses");
    config.apps.into_iter().next().expect("one app")
}

#[test]
fn an_app_gets_the_ipsie_rate_unless_configured_and_0_lifts_it() {
    let default = parsed("");
    assert_eq!(default.rate_limit, 25.0);
    assert_eq!(default.limits().rate_per_second, Some(25.0));
    // `AppConfig::new` is the same app as the three keys in TOML.
    assert_eq!(app(), default);
    let unlimited = parsed("rate_limit = 0");
    assert_eq!(unlimited.limits().rate_per_second, None);
    with_app(unlimited).validate().expect("valid");
    let faster = parsed("rate_limit = 100");
    assert_eq!(faster.limits().rate_per_second, Some(100.0));
    assert_eq!(
        parsed("rate_limit = 2.5").limits().rate_per_second,
        Some(2.5)
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let error = with_app(AppConfig {
            rate_limit: bad,
            ..app()
        })
        .validate()
        .expect_err("refused")
        .to_string();
        assert_eq!(
            error,
            "provisioner.apps[zendesk].rate_limit must be a number of requests per second, \
             or 0 for no limit",
            "{bad}"
        );
    }
}

fn with_oauth(lines: &str) -> Result<(), String> {
    let toml = format!(
        "[[apps]]\nname = \"lattice\"\nbase_url = \"https://lattice.example/scim/v2\"\n\
         [apps.oauth]\ntoken_url = \"https://login.example/token\"\nclient_id = \"hrsync\"\n{lines}"
    );
    let config: ProvisionerConfig = toml::from_str(&toml).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())
}

#[test]
fn oauth_settings_must_fit_the_client_authentication() {
    with_oauth("client_secret = \"s\"").expect("basic by default");
    with_oauth("client_secret = \"s\"\nclient_auth = \"post\"").expect("post");
    with_oauth(
        "client_auth = \"private_key_jwt\"\nprivate_key = { file = \"/absent/key.pem\" }\n\
         key_id = \"k1\"\nalgorithm = \"ES256\"\naudience = \"https://login.example\"",
    )
    .expect("no secret is read by validate");
    let cases = [
        (
            "client_auth = \"tls_client_auth\"",
            "provisioner.apps[lattice].oauth.client_auth must be \"basic\", \"post\" or \
             \"private_key_jwt\"",
        ),
        (
            "",
            "provisioner.apps[lattice].oauth.client_secret is not set (client_auth = \"basic\" \
             needs it)",
        ),
        (
            "client_secret = \"s\"\nkey_id = \"k1\"",
            "provisioner.apps[lattice].oauth.key_id is only for client_auth = \"private_key_jwt\"",
        ),
        (
            "client_auth = \"private_key_jwt\"",
            "provisioner.apps[lattice].oauth.private_key is not set (client_auth = \
             \"private_key_jwt\" needs it)",
        ),
        (
            "client_auth = \"private_key_jwt\"\nprivate_key = \"k\"\nalgorithm = \"none\"",
            "provisioner.apps[lattice].oauth.algorithm: algorithm \"none\" is not one of RS256, \
             RS384, RS512, PS256, PS384, PS512, ES256, ES384",
        ),
        (
            "client_auth = \"private_key_jwt\"\nprivate_key = \"k\"\naudience = \" \"",
            "provisioner.apps[lattice].oauth.audience is empty",
        ),
    ];
    for (lines, expected) in cases {
        assert_eq!(with_oauth(lines).expect_err(lines), expected, "{lines}");
    }
}

#[test]
fn an_inline_key_that_is_not_a_key_fails_naming_the_setting_not_the_value() {
    let app = AppConfig {
        token: None,
        oauth: Some(OAuthConfig {
            token_url: "https://login.example/token".to_owned(),
            client_id: "hrsync".to_owned(),
            client_secret: None,
            scope: None,
            client_auth: "private_key_jwt".to_owned(),
            private_key: Some(Secret::inline(
                "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD\n-----END PRIVATE KEY-----\n",
            )),
            key_id: None,
            algorithm: None,
            audience: None,
        }),
        ..app()
    };
    let error = app.credentials().expect_err("refused").to_string();
    assert_eq!(
        error,
        "provisioner.apps[zendesk].oauth.private_key: the key cannot be read as an RSA or EC \
         (P-256, P-384) private key"
    );
}

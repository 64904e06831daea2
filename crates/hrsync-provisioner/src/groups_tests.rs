use super::*;

#[test]
fn request_order_strictly_increases() {
    let seqs: Vec<i64> = (0..1000).map(|_| next_seq()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_group_renamed_is_known_by_its_new_name() {
    let target = Target {
        app: "zendesk".into(),
        client: ScimClient::new("http://127.0.0.1:9", "t", Duration::from_secs(1)).unwrap(),
        patch: true,
        renames: Arc::new(HashMap::from([(
            "Customer Care".to_owned(),
            vec!["Support".to_owned()],
        )])),
        batch: 100,
        linger: Duration::ZERO,
    };
    assert_eq!(target.current_name("Support"), "Customer Care");
    assert_eq!(target.current_name("Sales"), "Sales");
}

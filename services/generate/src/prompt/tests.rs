use super::*;

fn source(title: &str, text: &str) -> Source {
    Source {
        title: title.into(),
        heading: None,
        page: None,
        text: text.into(),
    }
}

/// The chat for the English question "q?" over `sources`, nothing else added.
fn english_q(sources: &[Source], profile: PromptProfile) -> Vec<ChatMessage> {
    compose(Lang::En, "q?", sources, None, &[], &[], profile)
}

#[test]
fn language_follows_the_question() {
    assert!(is_mostly_cjk("办公室的 Wi-Fi 密码是什么？"));
    assert!(is_mostly_cjk("如何配置 DNS 服务器"));
    assert!(!is_mostly_cjk("What is the office Wi-Fi password?"));
    assert!(!is_mostly_cjk("1234"));
    // Commands and paths are no language's words.
    assert!(is_mostly_cjk("使用 apt-get build-dep [1]。"));
    assert!(is_mostly_cjk("请编辑 /etc/kbd/config 文件"));
    assert!(!is_mostly_cjk("Edit /etc/kbd/config [1]."));
    assert!(!is_mostly_cjk("apt-get build-dep"));
    assert_eq!(not_found_answer("什么是 APT？"), "知识库中未找到相关内容。");
    assert_eq!(
        not_found_answer("What is APT?"),
        "Not found in the knowledge base."
    );
}

#[test]
fn sources_are_numbered_in_order() {
    let sources = [source("A", "alpha"), source("B", "beta")];
    let messages = english_q(&sources, PromptProfile::Standard);
    assert_eq!(messages.len(), 2);
    let user = &messages[1].content;
    let a = user.find("[1] A\nalpha").expect("first source");
    let b = user.find("[2] B\nbeta").expect("second source");
    assert!(a < b);
    assert!(user.trim_end().ends_with("say so."));
    assert!(user.contains("Question: q?"));
}

#[test]
fn the_example_profile_lists_the_best_source_next_to_the_question() {
    let sources = [
        source("A", "alpha"),
        source("B", "beta"),
        source("C", "gamma"),
    ];
    let messages = english_q(&sources, PromptProfile::Example);
    let user = &messages.last().unwrap().content;
    // Numbered by rank, listed from the lowest ranked up.
    let a = user.find("[1] A\nalpha").expect("best source");
    let b = user.find("[2] B\nbeta").expect("second source");
    let c = user.find("[3] C\ngamma").expect("third source");
    assert!(c < b && b < a, "{user}");
    assert!(
        user[a..].starts_with("[1] A\nalpha\n\nQuestion: q?"),
        "{user}"
    );
}

#[test]
fn header_is_one_line_with_heading_and_page() {
    let s = Source {
        title: "Guide\nv2".into(),
        heading: Some("Setup".into()),
        page: Some(3),
        text: String::new(),
    };
    assert_eq!(
        source_header(Lang::En, 4, &s),
        "[4] Guide v2 › Setup (page 3)"
    );
    assert_eq!(
        source_header(Lang::Zh, 1, &s),
        "[1] Guide v2 › Setup（第 3 页）"
    );
}

#[test]
fn chinese_question_gets_chinese_instructions() {
    let messages = compose(
        Lang::Zh,
        "密码是什么？",
        &[source("手册", "密码是 1234。")],
        None,
        &[],
        &[],
        PromptProfile::Standard,
    );
    assert!(messages[0].content.contains("只使用资料"));
    assert!(messages[1].content.contains("[1] 手册\n密码是 1234。"));
    assert!(messages[1].content.contains("问题：密码是什么？"));
}

#[test]
fn truncated_first_source_is_marked() {
    let messages = compose(
        Lang::En,
        "q",
        &[source("A", "long text")],
        Some("long"),
        &[],
        &[],
        PromptProfile::Standard,
    );
    assert!(messages[1].content.contains("[1] A\nlong …\n"));
}

#[test]
fn history_goes_between_system_and_question_without_markers() {
    let history = [
        HistoryTurn {
            question: " What is the Pro plan? ".into(),
            answer: "It is the paid tier [1], with backups [2][3].".into(),
        },
        HistoryTurn {
            question: "Who sells it?".into(),
            answer: "Zhiku Ltd [1].".into(),
        },
    ];
    let messages = compose(
        Lang::En,
        "What does it include?",
        &[source("A", "alpha")],
        None,
        &[],
        &history,
        PromptProfile::Standard,
    );
    use crate::Role;
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant,
            Role::User
        ]
    );
    assert_eq!(messages[1].content, "What is the Pro plan?");
    assert_eq!(messages[2].content, "It is the paid tier, with backups.");
    assert_eq!(messages[4].content, "Zhiku Ltd.");
    assert!(messages[5].content.contains("[1] A\nalpha"));
    assert!(
        messages[5]
            .content
            .contains("Question: What does it include?")
    );
    // No history: exactly the plain grounded chat.
    assert_eq!(
        grounded_messages("q?", &[source("A", "alpha")]),
        compose(
            Lang::En,
            "q?",
            &[source("A", "alpha")],
            None,
            &[],
            &[],
            PromptProfile::Standard
        )
    );
}

#[test]
fn persona_and_co_star_follow_the_grounding_rules() {
    let style = [
        ("persona", "a customer-support lead"),
        ("tone", "  friendly\n and calm "),
        ("audience", ""),
        ("response_format", "numbered steps"),
    ];
    let en = styled_system_prompt(Lang::En, &style);
    assert!(en.starts_with(system_prompt(Lang::En)), "rules first: {en}");
    assert!(en.ends_with(
        "The rules above always apply. Within them:\nPersona: a customer-support lead\nTone: friendly and calm\nResponse format: numbered steps"
    ), "{en}");
    assert!(!en.contains("Audience"));
    let zh = styled_system_prompt(Lang::Zh, &style);
    assert!(
        zh.contains("角色: a customer-support lead") && zh.contains("回答格式: numbered steps")
    );
    assert_eq!(styled_system_prompt(Lang::En, &[]), system_prompt(Lang::En));
}

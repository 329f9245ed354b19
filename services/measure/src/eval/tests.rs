use super::*;

const EPS: f64 = 1e-12;

#[test]
fn hit_and_reciprocal_rank() {
    let ranks = [false, false, true, false, true];
    assert_eq!(hit_at(&ranks, 1), 0.0);
    assert_eq!(hit_at(&ranks, 2), 0.0);
    assert_eq!(hit_at(&ranks, 3), 1.0);
    assert_eq!(hit_at(&ranks, 5), 1.0);
    assert_eq!(first_relevant_rank(&ranks), Some(3));
    assert!((reciprocal_rank(&ranks, 10) - 1.0 / 3.0).abs() < EPS);
    // Past the cutoff counts as not found.
    assert_eq!(reciprocal_rank(&ranks, 2), 0.0);
    assert_eq!(reciprocal_rank(&[], 10), 0.0);
    assert_eq!(first_relevant_rank(&[false, false]), None);
}

#[test]
fn ndcg_by_hand() {
    // One relevant of one, at rank 1: perfect.
    assert!((ndcg(&[true, false], 1, 10) - 1.0).abs() < EPS);
    // One relevant of one, at rank 3: 1/log2(4) = 0.5.
    assert!((ndcg(&[false, false, true], 1, 10) - 0.5).abs() < EPS);
    // Two relevant documents, found at ranks 1 and 3:
    // DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) = 1.6309297535714575.
    let got = ndcg(&[true, false, true], 2, 10);
    assert!((got - 1.5 / 1.6309297535714575).abs() < EPS, "{got}");
    assert!((got - 0.9197207891481876).abs() < 1e-12, "{got}");
    // Two relevant documents, only one found (rank 1): 1 / 1.6309297535714575.
    assert!((ndcg(&[true], 2, 10) - 0.6131471927654584).abs() < EPS);
    // A hit past the cutoff earns nothing.
    assert_eq!(ndcg(&[false, false, true], 1, 2), 0.0);
    // The ideal ranking is capped at k: 12 relevant, 10 found at the top is perfect.
    assert!((ndcg(&[true; 10], 12, 10) - 1.0).abs() < EPS);
}

#[test]
fn scores_and_means() {
    let a = Scores::of(&[false, true], 1);
    // Rank 2: MRR 1/2, nDCG 1/log2(3) = 0.6309297535714575.
    assert_eq!((a.hit_at_1, a.hit_at_5), (0.0, 1.0));
    assert!((a.mrr_at_10 - 0.5).abs() < EPS);
    assert!((a.ndcg_at_10 - 0.6309297535714575).abs() < EPS);
    let b = Scores::of(&[true], 1);
    let c = Scores::of(&[false; 10], 1);
    let mean = Summary::of([&a, &b, &c]);
    assert_eq!(mean.queries, 3);
    assert!((mean.means.hit_at_1 - 1.0 / 3.0).abs() < EPS);
    assert!((mean.means.hit_at_5 - 2.0 / 3.0).abs() < EPS);
    assert!((mean.means.mrr_at_10 - 0.5).abs() < EPS);
    assert!((mean.means.ndcg_at_10 - 1.6309297535714575 / 3.0).abs() < EPS);
    assert_eq!(Summary::of([]).queries, 0);
}

#[test]
fn relevant_documents_count_once() {
    let judgement = Judgement::Relevant(vec!["a".into(), "b".into()]);
    let hits = [("a", "x"), ("a", "y"), ("c", "z"), ("b", "w")];
    assert_eq!(
        judgement.relevance(hits),
        [true, false, false, true],
        "the second chunk of a is not relevant again"
    );
    assert_eq!(judgement.ideal_hits(), 2);
}

#[test]
fn evidence_counts_the_first_match_only() {
    let judgement = Judgement::Evidence(vec![normalize("apt-get  Install"), "备份".into()]);
    let hits = [
        ("d1", "nothing here"),
        ("d2", "Run APT-GET\n   install foo"),
        ("d3", "apt-get install again"),
        ("d4", "数据备份"),
    ];
    assert_eq!(judgement.relevance(hits), [false, true, false, false]);
    assert_eq!(judgement.ideal_hits(), 1);
    // Non-ASCII letters keep their case; whitespace inside CJK text is significant.
    assert_eq!(normalize(" Ä  b\tC\n中 文 "), "Ä b c 中 文");
}

#[test]
fn parses_lines_and_names_bad_ones() {
    let text = "\u{feff}{\"query\": \" 升级 \", \"relevant\": [\"a\", \"a\", \"b\"], \"lang\": \"zh\"}\n\n\
                {\"query\": \"q\", \"evidence\": [\"Foo  Bar\"]}\n";
    let queries = parse_queries(text).unwrap();
    assert_eq!(
        queries,
        [
            Query {
                line: 1,
                text: "升级".into(),
                lang: Some("zh".into()),
                judgement: Judgement::Relevant(vec!["a".into(), "b".into()]),
                answers: Vec::new(),
            },
            Query {
                line: 3,
                text: "q".into(),
                lang: None,
                judgement: Judgement::Evidence(vec!["foo bar".into()]),
                answers: Vec::new(),
            },
        ]
    );
    let error = |text: &str| parse_queries(text).unwrap_err();
    let ok = "{\"query\": \"q\", \"relevant\": [\"a\"]}\n";
    let (line, message) = error(&format!("{ok}\n{{not json\n"));
    assert_eq!(line, 3);
    assert!(message.contains("expected"), "{message}");
    let (line, message) = error(&format!(
        "{ok}{{\"query\": \"q\", \"relevant\": [\"a\"], \"evidence\": [\"b\"]}}"
    ));
    assert_eq!(line, 2);
    assert!(message.contains("both"), "{message}");
    // An `answer` (for answer evaluation) is accepted and ignored.
    let with_answer = "{\"query\": \"q\", \"evidence\": [\"e\"], \"answer\": [\"a\"]}";
    assert_eq!(parse_queries(with_answer).unwrap()[0].text, "q");
    let (_, message) = error("{\"query\": \"q\"}");
    assert!(message.contains("needs"), "{message}");
    let (_, message) = error("{\"query\": \"q\", \"relevent\": [\"a\"]}");
    assert!(message.contains("relevent"), "{message}");
    let (_, message) = error("{\"query\": \" \", \"relevant\": [\"a\"]}");
    assert!(message.contains("\"query\" is empty"), "{message}");
    let (_, message) = error("{\"query\": \"q\", \"evidence\": []}");
    assert!(message.contains("\"evidence\" is empty"), "{message}");
    let (_, message) = error("{\"query\": \"q\", \"evidence\": [\" \\n \"]}");
    assert!(message.contains("empty string"), "{message}");
    assert!(parse_queries("\n \n").unwrap().is_empty());
}

#[test]
fn table_is_aligned() {
    let summary = |n| Summary {
        queries: n,
        means: Scores {
            hit_at_1: 0.5,
            hit_at_5: 1.0,
            mrr_at_10: 0.75,
            ndcg_at_10: 2.0 / 3.0,
        },
    };
    let report = Report {
        kb: KbName::new("faq").unwrap(),
        embedder: "m".into(),
        documents: 2,
        chunks: 3,
        queries: 12,
        top_k: 10,
        translate: false,
        unanswerable: vec![],
        relevance: None,
        modes: vec![ModeReport {
            mode: SearchMode::Keyword,
            overall: summary(12),
            by_lang: [
                ("cross".to_string(), summary(2)),
                ("zh".to_string(), summary(10)),
            ]
            .into_iter()
            .collect(),
            per_query: vec![],
        }],
    };
    assert_eq!(
        table(&report),
        "kb faq: 2 documents, 3 chunks, embedder m; 12 queries, top 10\n\
         mode     lang   queries  hit@1  hit@5  MRR@10  nDCG@10\n\
         keyword  all         12  0.500  1.000   0.750    0.667\n\
         keyword  cross        2  0.500  1.000   0.750    0.667\n\
         keyword  zh          10  0.500  1.000   0.750    0.667\n"
    );
}

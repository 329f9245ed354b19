//! Moving a knowledge base to another embedding model: the KB refuses the new model until
//! it is re-embedded, `POST /v1/kbs/{kb}/reindex` (or `zhiku reindex --server`) switches it
//! in one step, and everything stored survives, across restarts.

use std::process::Command;

use serde_json::json;
use zhiku_e2e::{MINILM_ENV, Server, binary};

const E5: &str = "multilingual-e5-small-q4";
const MINILM: &str = "all-minilm-l6-v2";

fn docs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "disk-en.md",
            b"# Disk usage\n\nRun du -sh on a directory to see how much space it takes, and df -h for free space on each filesystem.\n".to_vec(),
        ),
        (
            "network-zh.md",
            "# 网络配置\n\n修改 /etc/network/interfaces 文件可以设置静态 IP 地址，然后重启网络服务使配置生效。\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "packages-zh.md",
            "# 软件包管理\n\n使用 apt install 安装软件包，使用 apt remove 卸载软件包，apt update 更新软件源列表。\n"
                .as_bytes()
                .to_vec(),
        ),
    ]
}

fn top_document(server: &Server, query: &str) -> String {
    let hits = server.search("kb", query, "dense");
    assert!(!hits.is_empty(), "no hits for {query}");
    hits[0]["document_name"].as_str().unwrap().to_string()
}

#[test]
fn reindex_moves_a_kb_to_the_new_model_atomically() {
    let old = Server::start_with_env(&MINILM_ENV);
    let (status, body) = old.upload("kb", &docs());
    assert_eq!(status, 201, "{body}");
    let (_, info) = old.get("/v1/kbs/kb");
    assert_eq!(info["embedder"], MINILM);
    let chunks = info["chunks"].as_u64().unwrap();
    assert!(chunks >= 3, "{info}");
    let data = old.kill();

    // The service now runs the default model: the KB says which model it needs and how
    // to move it, for searches and uploads alike, and nothing is changed by refusing.
    let server = Server::start_in(data, &[]);
    let (status, body) = server.post_json("/v1/kbs/kb/search", &json!({"query": "disk"}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "model_mismatch", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(MINILM) && message.contains(E5) && message.contains("zhiku reindex"),
        "{message}"
    );
    let (status, body) = server.upload("kb", &[("late.txt", b"one more document".to_vec())]);
    assert_eq!(status, 409, "{body}");

    let (status, body) = server.post_json("/v1/kbs/missing/reindex", &json!({}));
    assert_eq!(status, 404, "{body}");

    let (status, body) = server.post_json("/v1/kbs/kb/reindex", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_embedder"], MINILM, "{body}");
    assert_eq!(body["kb"]["embedder"], E5, "{body}");
    assert_eq!(body["kb"]["dimension"], 384, "{body}");
    assert_eq!(body["documents"], 3, "{body}");
    assert_eq!(body["chunks"], chunks, "{body}");

    // Dense search now understands Chinese, and across languages.
    assert_eq!(
        top_document(&server, "怎么安装和卸载软件"),
        "packages-zh.md"
    );
    assert_eq!(
        top_document(&server, "how do I set a static IP address"),
        "network-zh.md"
    );
    assert_eq!(
        top_document(&server, "查看目录占用了多少磁盘空间"),
        "disk-en.md"
    );
    let (_, info) = server.get("/v1/kbs/kb");
    assert_eq!(info["stored"]["vectors"], chunks, "{info}");
    assert_eq!(info["stored"]["keywords"], chunks, "{info}");
    let (status, body) = server.upload("kb", &[("late.txt", b"one more document".to_vec())]);
    assert_eq!(status, 201, "uploads work again: {body}");

    // The same through the CLI against the running server (e5 → e5 re-embeds in place).
    let output = Command::new(binary())
        .args(["reindex", "--kb", "kb", "--server", &server.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("reindexed kb: 4 documents"), "{stderr}");
    let output = Command::new(binary())
        .args(["reindex", "--kb", "nope", "--server", &server.url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));

    // The switch is durable.
    let data = server.kill();
    let server = Server::start_in(data, &[]);
    assert_eq!(
        top_document(&server, "怎么安装和卸载软件"),
        "packages-zh.md"
    );
    let (_, info) = server.get("/v1/kbs/kb");
    assert_eq!(info["embedder"], E5);
    assert_eq!(info["documents"], 4);
}

//! Unit tests of the writer.

mod round_trip {
    use crate::reader::Index;
    use crate::search::{Metric, Query, SearchParams};
    use crate::synth::{SynthConfig, SynthZoo};
    use crate::writer::*;

    fn zoo(models: usize, probes: usize) -> SynthZoo {
        SynthZoo::generate(SynthConfig {
            probes,
            concepts: 40,
            models,
            ..Default::default()
        })
    }

    fn append_zoo(path: &Path, z: &SynthZoo, range: std::ops::Range<usize>) {
        let mut w = IndexWriter::open(path, LockWait::Fail).unwrap();
        for m in &z.models[range] {
            let l = m.concepts.len();
            w.add_model(
                ModelInput {
                    name: m.name.clone(),
                    source: "synthetic".into(),
                    meta: vec![("seed".into(), "1".into())],
                    labels: Some(m.concepts.iter().map(|c| format!("concept-{c}")).collect()),
                    logits: LogitMatrix::new(&m.logits, z.config.probes, l).unwrap(),
                },
                AppendOptions::default(),
            )
            .unwrap();
        }
        w.commit().unwrap();
    }

    #[test]
    fn create_append_search_compact_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.plog");
        let z = zoo(12, 100);
        create(&path, &CreateOptions::new(100)).unwrap();
        assert!(matches!(
            create(&path, &CreateOptions::new(100)),
            Err(Error::AlreadyExists { .. })
        ));
        append_zoo(&path, &z, 0..5);
        append_zoo(&path, &z, 5..12);
        let idx = Index::open(&path).unwrap();
        let total: usize = z.models.iter().map(|m| m.concepts.len()).sum();
        assert_eq!(idx.entry_count() as usize, total);
        assert_eq!(idx.model_count(), 12);
        assert_eq!(idx.segment_count(), 3);
        let m7 = idx.model(7).unwrap();
        assert_eq!(m7.name, z.models[7].name);
        assert_eq!(m7.meta, vec![("seed".to_string(), "1".to_string())]);
        let e = m7.first_entry + 1;
        let info = idx.entry(e).unwrap();
        assert_eq!((info.model_id, info.logit), (7, 1));
        assert_eq!(
            info.label.unwrap(),
            format!("concept-{}", z.models[7].concepts[1])
        );
        let hits = idx
            .search(&Query::Entry(e), &SearchParams::default())
            .unwrap();
        assert_eq!(hits[0].entry, Some(e));
        assert!(hits[0].score.abs() < 1e-6);
        let hits = idx
            .search(
                &Query::Entry(e),
                &SearchParams {
                    exclude_same_model: true,
                    grouping: crate::Grouping::PerModel,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(hits.iter().all(|h| h.model_id != 7));
        let models: std::collections::HashSet<_> = hits.iter().map(|h| h.model_id).collect();
        assert_eq!(models.len(), hits.len());
        for (metric, grouping) in [
            (Metric::Full, crate::Grouping::Entries),
            (Metric::Blend, crate::Grouping::ModelMean),
        ] {
            let hits = idx
                .search(
                    &Query::Entry(e),
                    &SearchParams {
                        metric,
                        grouping,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(!hits.is_empty());
        }
        assert!(idx.verify().is_ok(), "{:?}", idx.verify());
        let before = idx
            .search(&Query::Entry(e), &SearchParams::default())
            .unwrap();
        let summary = compact(&path, LockWait::Fail).unwrap();
        assert_eq!(summary.segments_before, 3);
        // The old snapshot still reads; a fresh open sees one segment with the same results.
        assert_eq!(
            idx.search(&Query::Entry(e), &SearchParams::default())
                .unwrap(),
            before
        );
        let fresh = Index::open(&path).unwrap();
        assert_eq!(fresh.segment_count(), 1);
        assert_eq!(
            fresh
                .search(&Query::Entry(e), &SearchParams::default())
                .unwrap(),
            before
        );
        assert!(fresh.verify().is_ok());
    }
}

mod edge_tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::reader::Index;
    use crate::writer::*;

    #[test]
    fn empty_probe_names_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.plog");
        let mut opts = CreateOptions::new(2);
        opts.probe_names = Some(vec![String::new(), String::new()]);
        create(&path, &opts).unwrap();
        let idx = Index::open(&path).unwrap();
        assert_eq!(
            idx.probe_names().unwrap(),
            Some(vec![String::new(), String::new()])
        );
        assert!(idx.verify().is_ok());
    }

    #[test]
    fn compaction_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.plog");
        create(&path, &CreateOptions::new(4)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644 & !umask()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        compact(&path, LockWait::Fail).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn huge_top_returns_every_entry_without_huge_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.plog");
        create(&path, &CreateOptions::new(3)).unwrap();
        let mut w = IndexWriter::open(&path, LockWait::Fail).unwrap();
        let logits = [1.0, 2.0, 3.0, 1.0, 2.0, 1.0];
        w.add_model(
            ModelInput {
                name: "m".into(),
                source: String::new(),
                meta: vec![],
                labels: None,
                logits: LogitMatrix::new(&logits, 3, 2).unwrap(),
            },
            AppendOptions::default(),
        )
        .unwrap();
        w.commit().unwrap();
        let idx = Index::open(&path).unwrap();
        let params = crate::SearchParams {
            top: usize::MAX,
            ..Default::default()
        };
        let hits = idx.search(&crate::Query::Entry(0), &params).unwrap();
        assert_eq!(hits.len(), 2);
    }

    fn umask() -> u32 {
        // Read the process umask from a file created with mode 0o777.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o777)
            .open(&p)
            .unwrap();
        !std::fs::metadata(&p).unwrap().permissions().mode() & 0o777
    }
    use std::os::unix::fs::OpenOptionsExt;
}

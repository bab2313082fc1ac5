//! The tx class (90): standard transactions. Field lists only.

use super::fields::method_structs;

method_structs! {
    /// tx.select (90,10).
    TxSelect {}
    /// tx.select-ok (90,11).
    TxSelectOk {}
    /// tx.commit (90,20).
    TxCommit {}
    /// tx.commit-ok (90,21).
    TxCommitOk {}
    /// tx.rollback (90,30).
    TxRollback {}
    /// tx.rollback-ok (90,31).
    TxRollbackOk {}
}

//! Parser assertions beyond the snapshots (the `.ast` and `.ir` files of
//! `tests/syntax/`, which dmc's `corpus` harness compares, one test per file).

#[test]
fn precedence_groups_as_documented() {
    use datamesh_compiler::ast::{BinaryOp, ExprKind};
    let parsed = datamesh_compiler::parser::parse_expr("a + b * c == d or not e and f ?? g")
        .expect("parses");
    // `or` is loosest; its left side is the comparison.
    let ExprKind::Binary(BinaryOp::Or, left, right) = &parsed.kind else {
        panic!("top is `or`")
    };
    assert!(matches!(left.kind, ExprKind::Binary(BinaryOp::Eq, _, _)));
    let ExprKind::Binary(BinaryOp::And, _, coalesce) = &right.kind else {
        panic!("then `and`")
    };
    assert!(matches!(
        coalesce.kind,
        ExprKind::Binary(BinaryOp::Coalesce, _, _)
    ));
}

"""One test module per finding of the outside security review (issue 11), named after it."""

"""What people read: runs loaded, the trials frame, tables, figures, HTML and Markdown."""

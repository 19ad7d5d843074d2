"""Who may reach the studio's and the chat server's web servers: one set of rules for both (accounts, Host and
Origin checks, TLS), torch- and Gradio-free."""

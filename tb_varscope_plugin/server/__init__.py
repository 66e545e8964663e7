"""The TensorBoard side: the plugin's routes and loader, and the live reader that publishes reports."""

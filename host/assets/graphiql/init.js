// Starts GraphiQL against this server's /graphql. A browser logged in to the dashboard sends
// its session cookie and the CSRF token the session gives; without a session, put
// {"Authorization": "Bearer <token>"} in the headers editor.
(async function () {
  let headers = {};
  try {
    const session = await fetch('/ui/session', { credentials: 'same-origin' });
    if (session.ok) {
      const { csrf } = await session.json();
      if (csrf) headers = { 'X-CSRF-Token': csrf };
    }
  } catch (_) {
    // No session: the headers editor is the way in.
  }
  const fetcher = GraphiQL.createFetcher({ url: '/graphql', headers });
  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true, isHeadersEditorEnabled: true }));
})();

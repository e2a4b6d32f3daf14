from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from regqa.accounts import sso
from regqa.accounts import views as account_views
from regqa.api import views as api_views
from regqa.api.api import urls as api_urls
from regqa.qa import views as qa_views

urlpatterns = [
    path("", qa_views.home, name="home"),
    path("login/", account_views.login, name="login"),
    path("oidc/authenticate/", login_not_required(sso.LoginStart.as_view()), name="oidc_authentication_init"),
    path("oidc/callback/", login_not_required(sso.Callback.as_view()), name="oidc_authentication_callback"),
    path("sso/refused/", login_not_required(sso.refused), name="sso_refused"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("regqa.qa.urls")),
    path("documents/", include("regqa.documents.urls")),
    path("audit/", include("regqa.audit.urls")),
    path("api/", api_urls()),
    path("tokens/", api_views.token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", api_views.token_revoke, name="api_token_revoke"),
    path("admin/", admin.site.urls),
]

from config.routing import Router

from tasks_catalog.views import TaskTypeViewSet

router = Router()
router.register("task-types", TaskTypeViewSet, basename="task-type")
urlpatterns = router.urls
